//! `bench services` end to end at small sizes (no figure is asserted, only
//! the report's shape and the cleanup). Kernel tier: needs root and `nft`;
//! skips loudly otherwise (and fails under WEFT_REQUIRE_PRIVILEGED).

use std::process::Command;

use weft_bench::services::{ServicesBenchOpts, run};

mod common;
use common::{can_run, root_state};

/// The benchmark's namespaces of this process (`weftsvc…-<pid>-<seq>`).
fn own_netns() -> Vec<String> {
    let pid = format!("-{}-", std::process::id());
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("weftsvc") && n.contains(&pid))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn services_bench_small_sizes_run_for_real_and_clean_up() {
    let test = "services_bench_small_sizes_run_for_real_and_clean_up";
    let missing: Vec<String> = Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
        .then(|| "nft".to_string())
        .into_iter()
        .collect();
    if !can_run(test, &missing) {
        return;
    }
    let before = root_state();
    let report = run(&ServicesBenchOpts {
        sizes: vec![50],
        endpoints: 3,
        runs: 2,
        few: 2,
        many: 100,
        connections: 50,
        warmup: 5,
    })
    .expect("Services benchmark");

    assert_eq!(report["benchmark"], "services");
    let size = &report["programming"][0];
    assert_eq!(size["services"], 50);
    assert_eq!(size["full_sync_ms"]["runs"], 2, "{size}");
    assert!(size["endpoint_removed"]["delta_commands"].as_u64().unwrap() > 0);
    assert!(
        size["endpoint_added"]["load_ms"]["median"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(size["ruleset"]["chains"].as_u64().unwrap() > 50);
    assert!(size["memory"]["total_bytes"].as_u64().unwrap() > 0);
    let latency = &report["latency"];
    assert_eq!(latency["phases"].as_array().unwrap().len(), 4);
    assert_eq!(latency["few"]["samples"], 100);
    assert!(latency["ratio_p50"].as_f64().unwrap() > 0.0);
    assert!(
        report["met"]["full_sync_ms"].is_null(),
        "10,000 Services were not measured"
    );

    assert!(own_netns().is_empty(), "left behind: {:?}", own_netns());
    assert_eq!(root_state(), before, "the root namespace changed");
}
