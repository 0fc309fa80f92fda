//! `bench policy` end to end at a small size (benchmarks are not tests: no
//! figure is asserted, only the report's shape and the cleanup). Kernel
//! tier: needs root and `nft`; skips loudly otherwise (and fails under
//! WEFT_REQUIRE_PRIVILEGED).

use std::process::Command;

use weft_bench::policy::{PolicyBenchOpts, run};

mod common;
use common::{can_run, root_state};

/// The benchmark's namespaces of this process (`weftpol-<pid>-<seq>`).
fn own_netns() -> Vec<String> {
    let prefix = format!("weftpol-{}-", std::process::id());
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn policy_bench_small_size_loads_for_real_and_cleans_up() {
    let missing: Vec<String> = Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
        .then(|| "nft".to_string())
        .into_iter()
        .collect();
    if !can_run(
        "policy_bench_small_size_loads_for_real_and_cleans_up",
        &missing,
    ) {
        return;
    }
    let before = root_state();
    let report = run(&PolicyBenchOpts {
        sizes: vec![300],
        runs: 2,
    })
    .expect("policy benchmark");

    assert_eq!(report["benchmark"], "policy");
    let size = &report["sizes"][0];
    assert_eq!(size["pods"], 300);
    assert_eq!(size["nodes"], 3);
    assert_eq!(size["local_pods"], 100);
    for figure in ["full_sync_ms", "load_ms", "compile_ms"] {
        assert_eq!(size[figure]["runs"], 2, "{figure}: {size}");
    }
    assert!(size["policy_change"]["delta_commands"].as_u64().unwrap() > 0);
    assert!(size["pod_added"]["load_ms"]["median"].as_f64().unwrap() > 0.0);
    assert!(size["ruleset"]["chains"].as_u64().unwrap() > 1);
    assert!(size["memory"]["bytes_per_pod"].as_f64().unwrap() > 0.0);
    assert!(report["met"].is_null(), "10,000 pods were not measured");

    assert!(own_netns().is_empty(), "left behind: {:?}", own_netns());
    assert_eq!(root_state(), before, "the root namespace changed");
}
