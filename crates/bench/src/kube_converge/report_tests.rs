use super::*;

fn ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|&m| Duration::from_millis(m)).collect()
}

fn rss(kib: u64) -> Rss {
    Rss {
        vm_rss_kib: kib,
        vm_hwm_kib: kib + 1024,
    }
}

fn run(datastore: &'static str, latencies: Vec<Duration>, after_kib: u64) -> DatastoreRun {
    DatastoreRun {
        datastore,
        lab_up: Duration::from_millis(2500),
        pod_status: Samples {
            latencies: latencies.clone(),
            missed: 0,
            early: 0,
        },
        policy_create: Samples {
            latencies,
            missed: 1,
            early: 0,
        },
        memory: MemoryPhase {
            weftd_before: rss(10240),
            weftd_after: rss(after_kib),
            apiserver: (datastore == "kube").then(|| [rss(200_000), rss(400_000)]),
            etcd: None,
            load_s: 12.5,
            sync_s: 3.0,
        },
    }
}

fn params() -> Params {
    Params {
        backend: "host-gw".into(),
        events: 100,
        pods: 5000,
        policies: 1000,
        load_nodes: 50,
        in_flight: 16,
    }
}

#[test]
fn percentiles_and_ratios_over_one_hundred_events() {
    // file: 1..=100 ms; kube: twice that.
    let file: Vec<u64> = (1..=100).collect();
    let kube: Vec<u64> = file.iter().map(|m| m * 2).collect();
    let v = report(
        &params(),
        &[run("file", ms(&file), 20480), run("kube", ms(&kube), 40960)],
    );
    let f = &v["datastores"]["file"]["pod_status_to_rule"]["latency_ms"];
    assert_eq!(f["samples"], 100);
    assert_eq!(f["p50_ms"], 50.0);
    assert_eq!(f["p99_ms"], 99.0);
    assert_eq!(f["min_ms"], 1.0);
    assert_eq!(f["max_ms"], 100.0);
    assert_eq!(f["mean_ms"], 50.5);
    let r = &v["kube_over_file"];
    assert_eq!(r["pod_status_to_rule"]["p50"], 2.0);
    assert_eq!(r["policy_create_to_rule"]["p99"], 2.0);
    assert_eq!(r["weftd_after_rss"], 2.0);
    assert_eq!(v["missed"], 2);
    let mem = &v["datastores"]["kube"]["memory"];
    assert_eq!(mem["weftd_node1"]["after"]["rss_mib"], 40.0);
    assert_eq!(mem["weftd_node1"]["growth_rss_mib"], 30.0);
    assert_eq!(mem["kube_apiserver"]["after_rss_mib"], 390.625);
    assert!(v["datastores"]["file"]["memory"]["kube_apiserver"].is_null());
}

#[test]
fn one_datastore_alone_has_no_ratio_and_no_samples_no_summary() {
    let v = report(&params(), &[run("kube", Vec::new(), 1024)]);
    assert!(v["kube_over_file"].is_null());
    assert!(v["datastores"]["kube"]["pod_status_to_rule"]["latency_ms"].is_null());
}
