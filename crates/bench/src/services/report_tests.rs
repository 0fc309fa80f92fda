use std::time::Duration;

use serde_json::json;

use super::*;

fn change(render: f64, load: f64) -> EndpointChange {
    EndpointChange {
        agent: AgentChange {
            compile_ms: 5.0 * render,
            hash_ms: 1.0,
            batch_ms: 0.5,
            commit_ms: load,
            recompiled: 1,
            messages: 5,
        },
        batch_render_ms: render,
        batch_commit_ms: load,
        batch_messages: 4,
        batch_bytes: 400,
        nft: Change {
            compile_ms: 100.0,
            render_ms: 2.0 * render,
            load_ms: 10.0 * load,
            delta_text_bytes: 120,
            delta_commands: 3,
        },
    }
}

fn run(load: f64, delta_load: f64) -> Run {
    Run {
        compile_ms: 300.0,
        render_ms: 50.0,
        load_ms: load,
        full_text_bytes: 1000,
        stats: Stats {
            sets: 1,
            maps: 2,
            elements: 3,
            chains: 4,
            rules: 5,
        },
        endpoint_removed: change(1.0, delta_load),
        endpoint_added: change(1.0, delta_load + 2.0),
    }
}

fn memory() -> Memory {
    Memory {
        model_bytes: Some(3 << 20),
        ruleset_bytes: Some(1 << 20),
        process_peak_rss_bytes: Some(9 << 20),
    }
}

#[test]
fn a_size_reports_medians_and_judges_render_plus_load() {
    let runs = [run(900.0, 10.0), run(1000.0, 20.0), run(1100.0, 60.0)];
    let size = size_report(TARGET_SERVICES, TARGET_ENDPOINTS, &memory(), &runs);
    assert_eq!(size["full_sync_ms"]["median"], 1350.0);
    assert_eq!(
        size["endpoint_removed"]["render_and_load_ms"]["median"],
        21.0
    );
    assert_eq!(size["endpoint_added"]["render_and_load_ms"]["median"], 23.0);
    assert_eq!(
        size["endpoint_added"]["with_full_recompile_ms"]["median"],
        123.0
    );
    assert_eq!(size["endpoint_added"]["delta_commands"], 4);
    // The agent's path, judged.
    assert_eq!(
        size["endpoint_removed"]["agent"]["total_ms"]["median"],
        26.5
    );
    assert_eq!(size["endpoint_added"]["agent"]["total_ms"]["median"], 28.5);
    assert_eq!(size["endpoint_added"]["agent"]["recompiled_services"], 1);
    assert_eq!(size["endpoint_added"]["delta_bytes"], 400);
    // The nft path of the same change, reported beside it.
    assert_eq!(
        size["endpoint_removed"]["nft"]["render_and_load_ms"]["median"],
        202.0
    );
    assert_eq!(size["endpoint_removed"]["nft"]["delta_commands"], 3);
    assert_eq!(size["ruleset"]["chains"], 4);
    assert_eq!(size["memory"]["total_bytes"], 4 << 20);
    assert_eq!(size["memory"]["total_mib"], 4.0);
    assert_eq!(size["memory"]["bytes_per_service"], 419.43);

    let report = report(3, vec![size], None);
    assert_eq!(report["met"]["full_sync_ms"], true);
    assert_eq!(report["met"]["endpoint_change_ms"], true);
    assert!(report["met"]["latency_ratio_p50"].is_null());
}

#[test]
fn a_slow_change_or_another_size_is_not_met_or_not_judged() {
    let slow = size_report(
        TARGET_SERVICES,
        TARGET_ENDPOINTS,
        &memory(),
        &[run(2500.0, 80.0)],
    );
    let r = report(1, vec![slow], None);
    assert_eq!(r["met"]["full_sync_ms"], false);
    assert_eq!(r["met"]["endpoint_change_ms"], false);

    let small = size_report(1000, TARGET_ENDPOINTS, &Memory::default(), &[run(1.0, 1.0)]);
    let r = report(1, vec![small], None);
    assert!(r["met"]["full_sync_ms"].is_null());
    assert!(r["met"]["endpoint_change_ms"].is_null());
    assert!(r["programming"][0]["memory"]["total_bytes"].is_null());
}

#[test]
fn latency_pools_phases_per_table_and_takes_the_ratio() {
    let us = |v: &[u64]| v.iter().map(|&u| Duration::from_micros(u)).collect();
    let phases = [
        Phase {
            services: 10,
            samples: us(&[100, 100, 300]),
        },
        Phase {
            services: 10_000,
            samples: us(&[105, 105, 400]),
        },
        Phase {
            services: 10,
            samples: us(&[100, 100, 100]),
        },
        Phase {
            services: 10_000,
            samples: us(&[105, 105, 105]),
        },
    ];
    let l = latency_report(10, 10_000, 5, &phases);
    assert_eq!(l["phases"].as_array().unwrap().len(), 4);
    assert_eq!(l["few"]["samples"], 6);
    assert_eq!(l["few"]["p50_ms"], 0.1);
    assert_eq!(l["many"]["p50_ms"], 0.105);
    assert_eq!(l["ratio_p50"], 1.05);
    assert_eq!(l["ratio_p99"], json!(1.333));
    let r = report(1, vec![], Some(l));
    assert_eq!(r["met"]["latency_ratio_p50"], true);
    assert_eq!(r["benchmark"], "services");
}
