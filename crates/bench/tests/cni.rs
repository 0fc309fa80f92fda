//! The CNI benchmark against real plugins in namespaces it creates. Kernel
//! tier: needs root, iproute2 and Debian's containernetworking-plugins; skips
//! loudly otherwise (and fails under WEFT_REQUIRE_PRIVILEGED).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;
use weft_bench::cni::{CniBenchOpts, run};

mod common;
use common::{can_run, root_state};

/// The tests below compare the root namespace before and after a run, so
/// they must not overlap.
static SERIAL: Mutex<()> = Mutex::new(());

fn reference_plugins(test: &str) -> bool {
    let present =
        Path::new("/usr/lib/cni/bridge").exists() && Path::new("/usr/lib/cni/host-local").exists();
    let missing = if present {
        Vec::new()
    } else {
        vec!["containernetworking-plugins in /usr/lib/cni".to_string()]
    };
    can_run(test, &missing)
}

fn own_namespaces() -> Vec<String> {
    let marker = format!("-{}-", std::process::id());
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("weft") && n.contains(&marker))
                .collect()
        })
        .unwrap_or_default()
}

fn own_workdirs() -> Vec<PathBuf> {
    let prefix = format!("weft-bench-{}-", std::process::id());
    let opts = CniBenchOpts::default();
    [opts.work_dir, opts.bin_dir]
        .iter()
        .flat_map(|parent| std::fs::read_dir(parent).into_iter().flatten())
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

fn assert_summary(v: &Value, pods: u64) {
    assert_eq!(v["samples"], pods, "{v}");
    let p50 = v["p50_ms"].as_f64().unwrap();
    let p99 = v["p99_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{v}");
    assert!(v["min_ms"].as_f64().unwrap() <= p50, "{v}");
    assert!(v["max_ms"].as_f64().unwrap() >= p99, "{v}");
}

/// Until weft's plugin exists the reference side must run alone, and must
/// leave the root namespace exactly as it found it.
#[test]
fn reference_alone_runs_in_its_own_namespaces() {
    if !reference_plugins("reference_alone_runs_in_its_own_namespaces") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let report = run(&CniBenchOpts {
        only_reference: true,
        warmup: 2,
        ..CniBenchOpts::default()
    })
    .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    assert_eq!(report["benchmark"], "cni");
    assert_eq!(report["pods"], 100);
    assert_eq!(report["reference"]["plugins"], "bridge+host-local");
    assert_summary(&report["reference"]["add"], 100);
    assert_summary(&report["reference"]["del"], 100);
    assert!(report["weft"].is_null());
    assert!(report["ratio"].is_null());
    assert!(report["met"].is_null());
    assert_eq!(report["targets"]["add_p50_ratio_max"], 0.2);
    assert!(report["machine"]["nproc"].as_u64().unwrap() >= 1);

    assert_eq!(root_state(), before, "the root namespace changed");
    assert!(own_namespaces().is_empty(), "left: {:?}", own_namespaces());
    assert!(own_workdirs().is_empty(), "left: {:?}", own_workdirs());
}

/// Drives the weft side with a stand-in plugin (a shell script that answers
/// like a CNI plugin) to prove the protocol, the namespace the plugin runs
/// in, and the ratio and target fields.
#[test]
fn weft_side_is_invoked_like_a_runtime_would() {
    if !reference_plugins("weft_side_is_invoked_like_a_runtime_would") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("weft-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveOnDrop(dir.clone());
    let log = dir.join("calls.log");
    let plugin = dir.join("fake-weft");
    // Records, per call: command, its netns, the pod netns, CNI_PATH's
    // basename, argv0, whether stdin had prevResult and the config's name.
    std::fs::write(
        &plugin,
        format!(
            r#"#!/bin/sh
input=$(cat)
prev=no; case "$input" in *prevResult*) prev=yes;; esac
name=no; case "$input" in *'"name":"weftbench"'*) name=yes;; esac
echo "$CNI_COMMAND $(readlink /proc/self/ns/net) $CNI_NETNS $(basename "$CNI_PATH") $(basename "$0") $prev $name $CNI_IFNAME" >> {log}
case "$CNI_ARGS" in IgnoreUnknown=1\;K8S_POD_NAMESPACE=bench\;K8S_POD_NAME=pod-*) ;; *) echo bad args >&2; exit 1;; esac
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{{"cniVersion":"1.1.0","interfaces":[{{"name":"eth0","sandbox":"%s"}}],"ips":[{{"address":"10.244.0.2/32","interface":0}}]}}' "$CNI_NETNS"
fi
"#,
            log = log.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&plugin)
        .status()
        .unwrap();

    let before = root_state();
    let root_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let report = run(&CniBenchOpts {
        weft_bin: plugin.clone(),
        warmup: 1,
        ..CniBenchOpts::default()
    })
    .unwrap();

    assert_summary(&report["weft"]["add"], 100);
    assert_summary(&report["weft"]["del"], 100);
    assert_summary(&report["reference"]["add"], 100);
    assert_eq!(report["weft"]["bin"], plugin.to_str().unwrap());
    assert_eq!(report["weft"]["config"]["podCIDRs"][0], "10.244.0.0/16");
    let wa = report["weft"]["add"]["p50_ms"].as_f64().unwrap();
    let ra = report["reference"]["add"]["p50_ms"].as_f64().unwrap();
    let ratio = report["ratio"]["add_p50"].as_f64().unwrap();
    assert!((ratio - wa / ra).abs() < 0.01, "{ratio} vs {wa}/{ra}");
    assert_eq!(
        report["met"]["add_p50_ratio"],
        ratio <= 0.2,
        "{}",
        report["met"]
    );
    assert!(report["met"]["all"].is_boolean());

    let calls = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = calls.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 2 + 200, "1 warm-up pair + 100 ADDs + 100 DELs");
    let node_ns = lines[0][1];
    assert_ne!(
        Path::new(node_ns),
        root_ns,
        "the plugin ran in the root netns"
    );
    let mut pod_netns = std::collections::HashSet::new();
    for l in &lines {
        assert_eq!(
            l[1], node_ns,
            "every call runs in the same node netns: {l:?}"
        );
        assert!(l[2].starts_with("/run/netns/weftwp-"), "{l:?}");
        assert_eq!(l[4], "weft", "invoked as $CNI_PATH/weft: {l:?}");
        assert_eq!(l[5], if l[0] == "DEL" { "yes" } else { "no" }, "{l:?}");
        assert_eq!(l[6], "yes", "name injected: {l:?}");
        assert_eq!(l[7], "eth0");
        pod_netns.insert(l[2]);
    }
    assert_eq!(pod_netns.len(), 100);

    assert_eq!(root_state(), before, "the root namespace changed");
    assert!(own_namespaces().is_empty(), "left: {:?}", own_namespaces());
    assert!(own_workdirs().is_empty(), "left: {:?}", own_workdirs());
}

/// A plugin that fails makes the run fail, with its error, and still cleans up.
#[test]
fn a_failing_plugin_fails_the_run_and_cleans_up() {
    if !reference_plugins("a_failing_plugin_fails_the_run_and_cleans_up") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let report = run(&CniBenchOpts {
        weft_bin: PathBuf::from("/bin/false"),
        warmup: 0,
        ..CniBenchOpts::default()
    });
    let err = format!("{:#}", report.unwrap_err());
    assert!(err.contains("weft ADD pod-0"), "{err}");
    assert!(own_namespaces().is_empty(), "left: {:?}", own_namespaces());
    assert!(own_workdirs().is_empty(), "left: {:?}", own_workdirs());
}

/// A plugin that hangs is killed, with anything it started, at the timeout;
/// the run fails and still cleans up.
#[test]
fn a_hanging_plugin_is_killed_at_the_timeout() {
    if !reference_plugins("a_hanging_plugin_is_killed_at_the_timeout") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("weft-bench-hang-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveOnDrop(dir.clone());
    let plugin = dir.join("hang");
    // `sleep` inherits stdout: only killing the whole group ends the read.
    std::fs::write(&plugin, "#!/bin/sh\ncat >/dev/null\nsleep 600\n").unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&plugin)
        .status()
        .unwrap();
    let start = std::time::Instant::now();
    let report = run(&CniBenchOpts {
        weft_bin: plugin,
        warmup: 0,
        timeout: std::time::Duration::from_secs(1),
        ..CniBenchOpts::default()
    });
    let err = format!("{:#}", report.unwrap_err());
    assert!(err.contains("timed out"), "{err}");
    assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
    assert!(own_namespaces().is_empty(), "left: {:?}", own_namespaces());
    assert!(own_workdirs().is_empty(), "left: {:?}", own_workdirs());
}

#[test]
fn rejects_too_few_pods_and_a_missing_plugin() {
    let few = run(&CniBenchOpts {
        pods: 10,
        ..CniBenchOpts::default()
    });
    assert!(format!("{:#}", few.unwrap_err()).contains("at least 100"));
    let missing = run(&CniBenchOpts {
        weft_bin: PathBuf::from("/nonexistent/weft"),
        ..CniBenchOpts::default()
    });
    let err = format!("{:#}", missing.unwrap_err());
    // Without root the root check answers first; either way nothing ran.
    assert!(
        err.contains("/nonexistent/weft") || err.contains("root"),
        "{err}"
    );
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
