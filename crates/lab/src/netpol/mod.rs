//! NetworkPolicy around the reference evaluator, on the lab's live
//! datastore: `weftctl policy explain` ([`explain`]), the differential-test
//! harness that sets the evaluator's prediction against the lab's probes
//! ([`diff`]), and random policies for it ([`generate`]).
//!
//! The evaluator (`weft_policy`) is the specification; everything here only
//! feeds it the cluster as the agents see it (one datastore [`Snapshot`])
//! and presents what it says.

pub mod describe;
pub mod diff;
mod diff_report;
pub mod explain;
pub mod generate;

use weft_datastore::Snapshot;
use weft_policy::PolicyView;

use crate::error::Result;
use crate::layout::Layout;
use crate::store::Store;

pub use diff::{CellMismatch, Expectation, Mismatches, compare, predict};
pub use explain::{ExplainArgs, ExplainQuery, Explanation, PolicyArgs, PolicyCmd, run_policy};
pub use generate::{Rng, Universe};

/// The part of a snapshot the evaluator looks at. Rejected objects are not
/// in it: a policy that failed validation is not in force anywhere.
pub fn policy_view(snapshot: &Snapshot) -> PolicyView {
    PolicyView {
        namespaces: snapshot.namespaces.clone(),
        pods: snapshot.pods.clone(),
        policies: snapshot.policies.clone(),
        nodes: snapshot.nodes.clone(),
    }
}

/// One consistent snapshot of the lab's datastore (what every agent reads).
pub fn snapshot(layout: &Layout) -> Result<Snapshot> {
    Store::open(layout)?.snapshot()
}
