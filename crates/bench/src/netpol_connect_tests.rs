use std::collections::BTreeSet;

use weft_model::NetworkPolicy;

use super::*;

fn phase(per_s: f64, failures: usize) -> Phase {
    Phase {
        connections: 2000,
        failures,
        seconds: 2000.0 / per_s,
        per_s,
    }
}

fn pair() -> Pair {
    Pair {
        client: "x/a".into(),
        server: "x/b".into(),
        same_node: false,
    }
}

#[test]
fn the_unrelated_policies_validate_and_leave_x_alone() {
    let docs = policies(1000);
    assert_eq!(docs.len(), 1000);
    let names: BTreeSet<_> = docs
        .iter()
        .map(|d| d["metadata"]["name"].to_string())
        .collect();
    assert_eq!(names.len(), 1000, "names are unique");
    for d in &docs {
        NetworkPolicy::from_value(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        if d["metadata"]["namespace"] == "x" {
            // No netpol-model pod carries `bench`.
            assert!(d["spec"]["podSelector"]["matchLabels"]["bench"].is_string());
        }
    }
    assert_eq!(policies(1000), docs, "deterministic");
}

#[test]
fn ratio_brackets_each_round_and_skips_unstable_ones() {
    let opts = NetpolConnectOpts::default();
    // Round 2's load changed abruptly (1000 -> 400 around it); round 3
    // runs at a steady lower speed.
    let without = [
        phase(1000.0, 0),
        phase(1000.0, 0),
        phase(400.0, 0),
        phase(420.0, 0),
    ];
    let with = [phase(950.0, 0), phase(300.0, 0), phase(369.0, 0)];
    let r = report(&opts, pair(), true, &without, &with);
    let rounds = r["rounds_detail"].as_array().unwrap();
    assert_eq!(rounds[0], json!({"ratio": 0.95, "stable": true}));
    assert_eq!(rounds[1], json!({"ratio": 0.429, "stable": false}));
    assert_eq!(rounds[2], json!({"ratio": 0.9, "stable": true}));
    assert_eq!(r["stable_rounds"], 2);
    assert_eq!(r["ratio"], 0.9, "nearest rank: lower middle of 0.9, 0.95");
    assert_eq!(r["met"]["ratio"], true);
    assert_eq!(r["without_policies_per_s"]["runs"], 4);

    let slow = report(&opts, pair(), true, &without[..2], &[phase(800.0, 0)]);
    assert_eq!(slow["ratio"], 0.8);
    assert_eq!(slow["met"]["ratio"], false);
    let unstable = report(&opts, pair(), true, &without[1..3], &[phase(700.0, 0)]);
    assert!(unstable["ratio"].is_null(), "no stable round, no figure");
    assert!(unstable["met"]["ratio"].is_null());
}

#[test]
fn no_verdict_without_enforcement_or_with_failures() {
    let opts = NetpolConnectOpts::default();
    let ok = [phase(1000.0, 0), phase(1000.0, 0)];
    let r = report(&opts, pair(), false, &ok, &ok[..1]);
    assert_eq!(r["enforced"], false);
    assert_eq!(r["ratio"], 1.0);
    assert!(r["met"]["ratio"].is_null());
    assert!(r["note"].as_str().unwrap().starts_with("NOT ENFORCED"));
    let failed = report(&opts, pair(), true, &ok, &[phase(1000.0, 3)]);
    assert_eq!(failed["failures"], 3);
    assert!(failed["met"]["ratio"].is_null());
    assert!(report(&opts, pair(), true, &ok, &[])["ratio"].is_null());
}

#[test]
fn phase_rate_counts_completed_connections() {
    let p = Phase::of(100, 10, Duration::from_secs(2));
    assert_eq!(p.per_s, 45.0);
    assert_eq!(p.seconds, 2.0);
}
