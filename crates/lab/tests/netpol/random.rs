//! Differential random testing: seeded random policies over the lab's own
//! pods, namespaces and CIDRs, applied together; the kernel must agree with
//! the evaluator on every cell. CI runs a few seeds; `WEFT_NETPOL_SEEDS=200`
//! (and `WEFT_NETPOL_POLICIES`, `WEFT_NETPOL_SEED_BASE`) run longer on
//! demand. A mismatch prints the seed, the policies and the tables.

use weft_lab::netpol::{Universe, generate};
use weft_lab::store::Store;
use weft_lab::{LabState, Layout};

use super::check::{delete_all_policies, try_converge};

/// Seeds in CI.
const CI_SEEDS: u64 = 6;
/// Policies per seed in CI.
const CI_POLICIES: usize = 4;

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Runs every seed and panics listing the seeds that disagreed, each with
/// its policies and mismatch tables.
pub fn run(layout: &Layout) {
    let seeds = env_number("WEFT_NETPOL_SEEDS", CI_SEEDS);
    let count = env_number("WEFT_NETPOL_POLICIES", CI_POLICIES as u64) as usize;
    let base = env_number("WEFT_NETPOL_SEED_BASE", 1000);
    let state = LabState::require(layout).unwrap();
    let cidrs: Vec<_> = state
        .nodes
        .iter()
        .flat_map(|n| n.pod_cidrs.clone())
        .collect();
    let universe = Universe::netpol(&cidrs);
    let store = Store::open(layout).unwrap();
    let mut failed = Vec::new();
    let mut denied = 0;
    for seed in base..base + seeds {
        delete_all_policies(layout);
        let docs = generate::policies(seed, &universe, count);
        store
            .apply(docs, &format!("generated policies, seed {seed}"))
            .unwrap_or_else(|e| panic!("seed {seed}: apply: {e}"));
        match try_converge(layout) {
            Ok(o) => denied += o.denied,
            Err(report) => {
                eprintln!("seed {seed} ({count} policies) disagrees:\n{report}");
                failed.push(seed);
            }
        }
    }
    delete_all_policies(layout);
    assert!(
        failed.is_empty(),
        "seeds {failed:?} disagree (see above); rerun one with \
         WEFT_NETPOL_SEED_BASE=<seed> WEFT_NETPOL_SEEDS=1 WEFT_NETPOL_POLICIES={count}"
    );
    assert!(denied > 0, "{seeds} seeds, and not one denied cell");
    println!("    {seeds} seeds x {count} policies agree ({denied} denied cells)");
}
