//! The lab benchmarks end to end, kept short (benchmarks are not tests: no
//! figure is asserted, only the report's shape and the cleanup). Kernel
//! tier: needs root and the workspace's `weft` and `weftd` built into the
//! same target directory as this test (`cargo build -p weft -p weftd`);
//! skips loudly otherwise (and fails under WEFT_REQUIRE_PRIVILEGED).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use weft_bench::lab_up::{LabUpOpts, run as lab_up};
use weft_bench::throughput::{ThroughputOpts, run as throughput};
use weft_lab::model::ModelKind;

mod common;
use common::{can_run, root_state};

/// Both tests compare the root namespace before and after a run.
static SERIAL: Mutex<()> = Mutex::new(());

/// target/<profile>, where cargo builds the binaries next to `deps/`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn ready(test: &str, tools: &[&str]) -> bool {
    let dir = bin_dir();
    let missing: Vec<String> = ["weft", "weftd"]
        .iter()
        .map(|b| dir.join(b))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .chain(
            tools
                .iter()
                .filter(|t| Command::new(t).arg("--version").output().is_err())
                .map(|t| t.to_string()),
        )
        .collect();
    can_run(test, &missing)
}

/// Namespaces of the labs under `/run/weft/bench-<name>`.
fn bench_netns(name: &str, labs: &[&str]) -> Vec<String> {
    let prefixes: Vec<String> = labs
        .iter()
        .map(|l| {
            let layout = weft_lab::Layout::new(format!("/run/weft/bench-{name}/{l}"));
            format!("{}-", layout.prefix())
        })
        .collect();
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn lab_up_two_nodes_without_pods() {
    if !ready("lab_up_two_nodes_without_pods", &[]) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let report = lab_up(&LabUpOpts {
        nodes: 2,
        model: ModelKind::None,
        runs: 1,
        bin_dir: bin_dir(),
        ..LabUpOpts::default()
    })
    .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report["benchmark"], "lab-up");
    assert_eq!(report["nodes"], 2);
    assert_eq!(report["pods"], 0);
    assert_eq!(report["model"], "none");
    assert_eq!(report["samples"].as_array().unwrap().len(), 1);
    let s = &report["samples"][0];
    let serving = s["serving_s"].as_f64().unwrap();
    assert!(
        serving > 0.0 && s["synced_s"].as_f64().unwrap() >= serving,
        "{s}"
    );
    assert!(s["reachable_s"].is_null(), "no pods, nothing to probe: {s}");
    assert!(s["down_s"].as_f64().unwrap() > 0.0);
    assert!(report["met"]["ready_s"].is_boolean());
    assert_eq!(root_state(), before, "the root namespace changed");
    assert!(bench_netns("lab-up", &["lab"]).is_empty());
    assert!(!Path::new("/run/weft/bench-lab-up/lab").exists());
}

#[test]
fn throughput_one_short_run_per_case() {
    if !ready("throughput_one_short_run_per_case", &["iperf3"]) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let report = throughput(&ThroughputOpts {
        seconds: 1,
        omit: 0,
        runs: 1,
        bin_dir: bin_dir(),
        ..ThroughputOpts::default()
    })
    .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    for case in ["underlay", "same_node", "vxlan", "host_gw"] {
        let c = &report["cases"][case];
        assert_eq!(c["receiver_gbps"]["runs"], 1, "{case}: {c}");
        assert!(c["receiver_gbps"]["median"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert_eq!(report["cases"]["underlay"]["client_mtu"], 1500);
    assert!(report["ratio"]["vxlan_over_underlay"].is_f64());
    assert!(report["met"]["all"].is_boolean());
    assert_eq!(root_state(), before, "the root namespace changed");
    assert!(bench_netns("throughput", &["vxlan", "host-gw"]).is_empty());
}
