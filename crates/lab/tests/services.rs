//! Services end to end on a real lab: two dual-stack nodes running the real
//! weftd, pods attached through the real plugin chain, Services applied
//! with `weftctl apply -f` (the lab allocating cluster IPs and NodePorts and
//! writing the EndpointSlices), the external client on the underlay.
//!
//! Which endpoint answered comes from the whoami responder every lab pod
//! runs on port 9376 (`<pod> <peer as the pod saw it>`), so spread,
//! affinity, removal and source preservation are each one exchange.
//!
//! On `--datastore kube` (a real control plane, `$WEFT_KUBE_BIN`) the API
//! server allocates the addresses and kube-controller-manager writes the
//! slices; a second lab runs every case again, the agents reading it all
//! through the kube source (about 10 s beyond the control plane's start).
//!
//! Kernel tier: needs root, the reference plugins, `conntrack` and a built
//! weftd (`cargo build --bins`); skips loudly otherwise, fails instead where
//! `WEFT_REQUIRE_PRIVILEGED` is set (CI).

mod common;
#[path = "services/traffic.rs"]
mod traffic;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Lab, bin_dir, named, step};
use weft_lab::cli::ApplyArgs;
use weft_lab::cluster::{self, Datastore, UpOpts};
use weft_lab::kubelet::{self, PodSpec};
use weft_lab::model::ModelKind;
use weft_lab::probe::ProbeQuery;
use weft_lab::services::whoami::{self, Answer};
use weft_lab::services::{self, ServiceStatus};
use weft_lab::store::Store;
use weft_lab::{LabState, Layout, probe_services, report};
use weft_model::Protocol;

/// Every Service the suite uses, applied at once (one agent sync).
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec:
  ipFamilyPolicy: PreferDualStack
  selector: {app: web}
  ports:
  - {name: who, port: 80, targetPort: 9376}
  - {name: echo, port: 8080, targetPort: serve-80-tcp}
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: x}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: x}
spec:
  selector: {app: nothing}
  ports: [{port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Service
metadata: {name: self-a, namespace: x}
spec:
  selector: {name: web-a}
  ports: [{port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Service
metadata: {name: np-cluster, namespace: x}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Service
metadata: {name: np-local, namespace: x}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {name: web-b}
  ports: [{port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: x}
spec:
  selector: {app: udp}
  ports: [{port: 53, protocol: UDP, targetPort: 9376}]
"#;

const ASK_TIMEOUT: Duration = Duration::from_millis(1500);

fn main() {
    common::dispatch_argv0();
    let Some(weftd) = common::preflight_weftd("lab_services") else {
        return;
    };
    if !std::path::Path::new("/usr/sbin/conntrack").exists() {
        common::skip("lab_services", "needs conntrack (scripts/install-deps)");
        return;
    }
    let bin = bin_dir(&[], &[("weftd", &weftd)]);
    let begun = Instant::now();
    // Every datastore runs even when one fails (its lab is removed as the
    // panic unwinds), so a run reports each datastore's first failure.
    let mut failed = Vec::new();
    for ds in common::datastores("lab_services") {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| suite(bin.path(), ds)));
        if run.is_err() {
            failed.push(ds.as_str());
        }
    }
    assert!(failed.is_empty(), "lab_services failed on: {failed:?}");
    println!("lab_services: all passed in {:.1?}", begun.elapsed());
}

fn suite(bin: &std::path::Path, ds: Datastore) {
    let lab = Lab::new(&format!("lab-svc-{}", ds.as_str()));
    let layout = &lab.layout;
    let opts = UpOpts {
        nodes: 2,
        segments: 1,
        backend: "vxlan".into(),
        families: vec![4, 6],
        model: ModelKind::None,
        agent: true,
        bin_dir: bin.to_path_buf(),
        agent_timeout: Duration::from_secs(20),
        datastore: Datastore::File,
        kube_bin_dir: None,
    };
    cluster::up(layout, &common::on(opts, ds))
        .unwrap_or_else(|e| panic!("lab up --datastore {}: {e}", ds.as_str()));
    let step = |name: &str, f: &dyn Fn()| step(&named(ds, name), f);
    step("services/setup", &|| setup(layout));
    step("services/allocated_and_listed", &|| allocated(layout));
    step("services/clusterip_from_pods_and_node", &|| {
        clusterip_everywhere(layout)
    });
    step("services/spread_over_endpoints", &|| spread(layout));
    step("services/client_ip_affinity", &|| affinity(layout));
    step("services/no_endpoint_rejects_fast", &|| reject_fast(layout));
    step("services/hairpin", &|| hairpin(layout));
    step("services/nodeport_external_traffic_policies", &|| {
        nodeport(layout)
    });
    step("services/policy_after_dnat", &|| policy_after_dnat(layout));
    step("services/traffic_setup", &|| traffic::setup(layout));
    step("services/internal_traffic_policy_local", &|| {
        traffic::internal_traffic_policy_local(layout)
    });
    step("services/terminating_serving_endpoints", &|| {
        traffic::terminating(layout)
    });
    step("services/sctp_programmed", &|| {
        traffic::sctp_programmed(layout)
    });
    step("services/external_and_lb_ips", &|| {
        traffic::external_and_lb_ips(layout)
    });
    step("services/endpoint_removal", &|| endpoint_removal(layout));
    step("services/udp_failover", &|| udp_failover(layout));
    // Last: it fails while weft rejects where kube-proxy drops.
    step(
        "services/internal_traffic_policy_local_drops_elsewhere",
        &|| traffic::internal_traffic_policy_local_drops_elsewhere(layout),
    );
}

fn pod(name: &str, node: &str, app: &str) -> PodSpec {
    PodSpec {
        namespace: "x".into(),
        name: name.into(),
        node: Some(node.into()),
        labels: [("app".into(), app.into()), ("name".into(), name.into())].into(),
        ports: vec![(Protocol::Tcp, 80), (Protocol::Udp, 80)],
    }
}

fn add_pods(layout: &Layout, pods: &[PodSpec]) {
    let mut state = LabState::require(layout).unwrap();
    let store = Store::open(layout).unwrap();
    for p in pods {
        kubelet::add_pod(layout, &mut state, &store, p).unwrap();
    }
    services::reconcile_endpoints(&store).unwrap();
}

fn del_pod(layout: &Layout, key: &str) {
    let mut state = LabState::require(layout).unwrap();
    let ips: Vec<String> = state
        .pods
        .iter()
        .find(|p| format!("{}/{}", p.namespace, p.name) == key)
        .map(|p| p.ips.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let store = Store::open(layout).unwrap();
    kubelet::del_pod(layout, &mut state, &store, key).unwrap();
    services::reconcile_endpoints(&store).unwrap();
    // With the real API, kube-controller-manager removes the endpoint on its
    // own schedule: a `lab sync` taken before it would prove nothing about
    // the agents. Wait until no EndpointSlice lists the pod any more.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let slices = store.list("EndpointSlice").unwrap();
        let listed = slices.iter().any(|s| {
            s["endpoints"].as_array().is_some_and(|eps| {
                eps.iter().any(|e| {
                    e["addresses"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|a| ips.iter().any(|ip| a == ip.as_str())))
                })
            })
        });
        if !listed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pod {key} ({ips:?}) still in an EndpointSlice 20 s after its deletion"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `weftctl apply -f` (or `delete -f` when `delete`) on `text`.
fn kubectl(layout: &Layout, text: &str, delete: bool) {
    let file = weft_testkit::TempDir::new("svc-manifest").unwrap();
    let path = file.path().join("m.yaml");
    std::fs::write(&path, text).unwrap();
    let args = ApplyArgs {
        file: path,
        state_dir: Some(layout.root().to_path_buf()),
    };
    if delete {
        weft_lab::run_delete(args).unwrap();
    } else {
        weft_lab::run_apply(args).unwrap();
    }
}

fn apply(layout: &Layout, text: &str) {
    kubectl(layout, text, false);
}

fn delete(layout: &Layout, text: &str) {
    kubectl(layout, text, true);
}

fn sync(layout: &Layout) {
    report::sync(layout, Duration::from_secs(20)).unwrap_or_else(|e| panic!("lab sync: {e}"));
}

fn svc(layout: &Layout, name: &str) -> ServiceStatus {
    services::service(&Store::open(layout).unwrap(), &format!("x/{name}")).unwrap()
}

fn netns_of(layout: &Layout, client: &str) -> String {
    let state = LabState::require(layout).unwrap();
    match client.strip_prefix("node/") {
        Some(node) => state
            .nodes
            .iter()
            .find(|n| n.name == node)
            .unwrap()
            .netns
            .clone(),
        None if client == "ext" => state.external.unwrap().netns,
        None => state.pod(client).unwrap().netns.clone(),
    }
}

fn ask(layout: &Layout, from: &str, to: SocketAddr, protocol: Protocol) -> Answer {
    whoami::ask(&netns_of(layout, from), to, protocol, None, ASK_TIMEOUT)
        .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"))
}

fn v4(ips: &[IpAddr]) -> IpAddr {
    *ips.iter().find(|ip| ip.is_ipv4()).unwrap()
}

fn setup(layout: &Layout) {
    add_pods(
        layout,
        &[
            pod("web-a", "node1", "web"),
            pod("web-b", "node2", "web"),
            pod("web-c", "node2", "web"),
            pod("u1", "node1", "udp"),
            pod("u2", "node2", "udp"),
            pod("cli1", "node1", "client"),
            pod("cli2", "node2", "client"),
        ],
    );
    apply(layout, SERVICES);
    sync(layout);
}

fn allocated(layout: &Layout) {
    let status = report::status(layout).unwrap();
    let web = status.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web.cluster_ips.len(), 2, "{web:?}");
    assert!(
        web.cluster_ips[0].to_string().starts_with("10.96."),
        "{web:?}"
    );
    assert!(
        web.cluster_ips[1].to_string().starts_with("fd00:10:96::"),
        "{web:?}"
    );
    assert_eq!(web.endpoints.len(), 6, "three pods, two families: {web:?}");
    let np = status
        .services
        .iter()
        .find(|s| s.name == "np-cluster")
        .unwrap();
    assert_eq!(np.node_ports.len(), 1);
    assert!((30000..=32767).contains(&np.node_ports[0]), "{np:?}");
    let json = serde_json::to_value(&status).unwrap();
    assert!(json["services"][0]["clusterIPs"].is_array(), "{json}");
    assert!(
        json["external"]["netns"]
            .as_str()
            .unwrap()
            .ends_with("-ext")
    );
    // A re-apply keeps every address and port.
    apply(layout, SERVICES);
    assert_eq!(svc(layout, "web").cluster_ips, web.cluster_ips);
    assert_eq!(svc(layout, "np-cluster").node_ports, np.node_ports);
}

fn clusterip_everywhere(layout: &Layout) {
    let web = svc(layout, "web");
    let endpoints: BTreeSet<&str> = ["x/web-a", "x/web-b", "x/web-c"].into();
    for client in ["x/cli1", "x/cli2", "node/node1", "node/node2"] {
        for ip in &web.cluster_ips {
            let answer = ask(layout, client, SocketAddr::new(*ip, 80), Protocol::Tcp);
            assert!(endpoints.contains(answer.pod.as_str()), "{answer:?}");
        }
    }
    // The probe JSON through the Service's echo port, both families.
    let state = LabState::require(layout).unwrap();
    let query = ProbeQuery {
        from: vec!["x/cli1".into(), "x/cli2".into(), "node/node1".into()],
        to: vec!["svc/x/web".into()],
        port: 8080,
        protocol: Protocol::Tcp,
        families: Vec::new(),
        timeout: ASK_TIMEOUT,
    };
    let records = probe_services::probe(&state, &Store::open(layout).unwrap(), &query).unwrap();
    assert_eq!(records.len(), 6);
    assert!(
        records.iter().all(|r| r.connected && r.to == "svc/x/web"),
        "{records:?}"
    );
}

fn spread(layout: &Layout) {
    let to = SocketAddr::new(v4(&svc(layout, "web").cluster_ips), 80);
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        seen.insert(ask(layout, "x/cli1", to, Protocol::Tcp).pod);
    }
    assert_eq!(
        seen.len(),
        3,
        "every endpoint over 100 connections: {seen:?}"
    );
}

fn affinity(layout: &Layout) {
    let to = SocketAddr::new(v4(&svc(layout, "sticky").cluster_ips), 80);
    let first = ask(layout, "x/cli2", to, Protocol::Tcp).pod;
    for _ in 0..20 {
        assert_eq!(ask(layout, "x/cli2", to, Protocol::Tcp).pod, first);
    }
}

fn reject_fast(layout: &Layout) {
    let to = SocketAddr::new(v4(&svc(layout, "empty").cluster_ips), 80);
    assert_rejected_fast(layout, "x/cli1", to);
}

/// One TCP exchange from `from` to `to` given `timeout`: the answer (or
/// the error, as text) and how long it took.
fn attempt(
    layout: &Layout,
    from: &str,
    to: SocketAddr,
    timeout: Duration,
) -> (Result<Answer, String>, Duration) {
    let begun = Instant::now();
    let got = whoami::ask(&netns_of(layout, from), to, Protocol::Tcp, None, timeout);
    (got.map_err(|e| e.to_string()), begun.elapsed())
}

/// A connection from `from` to `to` is refused at once (TCP reset or
/// ICMP unreachable), as to a Service without a usable endpoint.
fn assert_rejected_fast(layout: &Layout, from: &str, to: SocketAddr) {
    let (got, took) = attempt(layout, from, to, ASK_TIMEOUT);
    let err = match got {
        Ok(answer) => panic!("{from} -> {to} should be rejected, yet {answer:?}"),
        Err(e) => e,
    };
    assert!(
        took < Duration::from_millis(100),
        "rejected after {took:?}: {err}"
    );
    assert!(err.contains("refused"), "{err}");
}

fn hairpin(layout: &Layout) {
    for ip in svc(layout, "self-a").cluster_ips {
        let answer = ask(layout, "x/web-a", SocketAddr::new(ip, 80), Protocol::Tcp);
        assert_eq!(answer.pod, "x/web-a");
    }
}

fn nodeport(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    let ext_ip = state.external.as_ref().unwrap().addresses[0].addr();
    let node_ip = |name: &str| {
        let node = state.nodes.iter().find(|n| n.name == name).unwrap();
        node.addresses[0].addr()
    };
    // Cluster: any endpoint, from any node, source masqueraded.
    let port = svc(layout, "np-cluster").node_ports[0];
    for node in ["node1", "node2"] {
        let answer = ask(
            layout,
            "ext",
            SocketAddr::new(node_ip(node), port),
            Protocol::Tcp,
        );
        assert_ne!(answer.peer.ip(), ext_ip, "masqueraded: {answer:?}");
    }
    // Local: the client's source preserved; no local endpoint, no
    // connection.
    let port = svc(layout, "np-local").node_ports[0];
    let answer = ask(
        layout,
        "ext",
        SocketAddr::new(node_ip("node2"), port),
        Protocol::Tcp,
    );
    assert_eq!(answer.pod, "x/web-b");
    assert_eq!(answer.peer.ip(), ext_ip, "source preserved: {answer:?}");
    let to = SocketAddr::new(node_ip("node1"), port);
    let got = whoami::ask(
        &netns_of(layout, "ext"),
        to,
        Protocol::Tcp,
        None,
        ASK_TIMEOUT,
    );
    assert!(got.is_err(), "node1 has no local endpoint: {got:?}");
}

const DENY_B: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: x}
spec:
  podSelector: {matchLabels: {name: web-b}}
  policyTypes: [Ingress]
"#;

fn policy_after_dnat(layout: &Layout) {
    apply(layout, DENY_B);
    sync(layout);
    let to = SocketAddr::new(v4(&svc(layout, "web").cluster_ips), 80);
    let netns = netns_of(layout, "x/cli1");
    let (mut ok, mut failed) = (BTreeSet::new(), 0);
    for _ in 0..30 {
        match whoami::ask(&netns, to, Protocol::Tcp, None, Duration::from_millis(300)) {
            Ok(a) => {
                ok.insert(a.pod);
            }
            Err(_) => failed += 1,
        }
    }
    assert!(!ok.contains("x/web-b"), "web-b is isolated: {ok:?}");
    assert!(!ok.is_empty() && failed > 0, "ok {ok:?}, failed {failed}");
    delete(layout, DENY_B);
    sync(layout);
}

fn endpoint_removal(layout: &Layout) {
    del_pod(layout, "x/web-c");
    sync(layout);
    assert_eq!(svc(layout, "web").endpoints.len(), 4);
    let to = SocketAddr::new(v4(&svc(layout, "web").cluster_ips), 80);
    for _ in 0..30 {
        assert_ne!(ask(layout, "x/cli1", to, Protocol::Tcp).pod, "x/web-c");
    }
}

fn udp_failover(layout: &Layout) {
    let to = SocketAddr::new(v4(&svc(layout, "dns").cluster_ips), 53);
    let netns = netns_of(layout, "x/cli1");
    // One long-lived flow: the same source port every time.
    let from_port = Some(40053);
    let first = whoami::ask(&netns, to, Protocol::Udp, from_port, ASK_TIMEOUT).unwrap();
    let again = whoami::ask(&netns, to, Protocol::Udp, from_port, ASK_TIMEOUT).unwrap();
    assert_eq!(first.pod, again.pod, "one flow, one endpoint");
    del_pod(layout, &first.pod);
    sync(layout);
    let after = whoami::ask(&netns, to, Protocol::Udp, from_port, ASK_TIMEOUT)
        .unwrap_or_else(|e| panic!("the flow stuck to the dead endpoint: {e}"));
    assert_ne!(after.pod, first.pod);
}
