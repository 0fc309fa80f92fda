use weft_policy::nft::Stats;

use super::*;

fn change(total: f64) -> Change {
    Change {
        compile_ms: total / 2.0,
        render_ms: 0.0,
        load_ms: total / 2.0,
        delta_text_bytes: 100,
        delta_commands: 3,
    }
}

fn run(full: f64, policy: f64) -> Run {
    Run {
        local_pods: 100,
        compile_ms: full / 2.0,
        render_ms: 0.0,
        load_ms: full / 2.0,
        full_text_bytes: 1000,
        stats: Stats::default(),
        policy_change: change(policy),
        pod_added: change(policy * 2.0),
    }
}

fn memory(per_pod: u64) -> Memory {
    Memory::from_counters(
        10_000,
        Some(1_000),
        Some(1_000 + 10_000 * per_pod - 500),
        Some(1_000 + 10_000 * per_pod),
        Some(1 << 30),
    )
}

#[test]
fn memory_splits_model_and_ruleset() {
    let m = memory(1_000);
    assert_eq!(m.model_bytes, Some(10_000 * 1_000 - 500));
    assert_eq!(m.ruleset_bytes, Some(500));
    assert_eq!(m.total_bytes, Some(10_000_000));
    assert_eq!(m.bytes_per_pod, Some(1_000.0));
    let unknown = Memory::from_counters(10, None, None, None, None);
    assert_eq!(unknown.bytes_per_pod, None);
}

#[test]
fn sizes_report_medians_and_deltas() {
    let s = size_report(
        10_000,
        &memory(1_000),
        &[run(900.0, 40.0), run(1100.0, 60.0), run(800.0, 30.0)],
    );
    assert_eq!(s["full_sync_ms"]["median"], 900.0);
    assert_eq!(s["full_sync_ms"]["max"], 1100.0);
    assert_eq!(s["policy_change"]["total_ms"]["median"], 40.0);
    assert_eq!(s["pod_added"]["total_ms"]["median"], 80.0);
    assert_eq!(s["policy_change"]["delta_commands"], 3);
    assert_eq!(s["nodes"], 100);
    assert_eq!(s["ruleset"]["full_text_bytes"], 1000);
    assert_eq!(s["memory"]["bytes_per_pod"], 1000.0);
}

#[test]
fn targets_are_judged_at_ten_thousand_pods() {
    let small = size_report(1_000, &memory(5_000), &[run(5000.0, 500.0)]);
    let fast = size_report(10_000, &memory(1_000), &[run(900.0, 40.0)]);
    let r = report(1, vec![small.clone(), fast]);
    assert_eq!(r["met"]["full_sync_ms"], true);
    assert_eq!(r["met"]["policy_change_ms"], true);
    assert_eq!(r["met"]["bytes_per_pod"], true);
    assert_eq!(r["sizes"].as_array().unwrap().len(), 2);

    let slow = size_report(10_000, &memory(3_000), &[run(1200.0, 60.0)]);
    let r = report(1, vec![slow]);
    assert_eq!(r["met"]["full_sync_ms"], false);
    assert_eq!(r["met"]["policy_change_ms"], false);
    assert_eq!(r["met"]["bytes_per_pod"], false);

    assert!(report(1, vec![small])["met"].is_null(), "10k not measured");
}
