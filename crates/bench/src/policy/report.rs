//! The policy benchmark's figures and their JSON report.

use serde::Serialize;
use serde_json::{Value, json};
use weft_policy::nft::Stats;

use crate::stats::{Spread, round3};

/// The size the targets are stated for (pods, and as many policies).
pub const TARGET_PODS: usize = 10_000;
/// Target: full sync at [`TARGET_PODS`], milliseconds.
pub const FULL_SYNC_MS_MAX: f64 = 1000.0;
/// Target: one policy change at [`TARGET_PODS`], milliseconds.
pub const POLICY_CHANGE_MS_MAX: f64 = 50.0;
/// Target: agent memory per pod at [`TARGET_PODS`], bytes.
pub const BYTES_PER_POD_MAX: f64 = 2048.0;

/// One change applied as a delta.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Change {
    /// Recompiling the node's ruleset from the changed model.
    pub compile_ms: f64,
    /// [`weft_policy::nft::render_delta`] against the loaded ruleset.
    pub render_ms: f64,
    /// `nft -f` of the delta.
    pub load_ms: f64,
    /// Size of the delta script.
    pub delta_text_bytes: usize,
    /// Non-empty lines (commands) of the delta script.
    pub delta_commands: usize,
}

impl Change {
    /// What the agent spends on the change, end to end.
    pub fn total_ms(&self) -> f64 {
        self.compile_ms + self.render_ms + self.load_ms
    }
}

/// One timed run at one size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    /// Pods attached on the programmed node.
    pub local_pods: usize,
    /// Compiling the node's ruleset.
    pub compile_ms: f64,
    /// Rendering it as one `nft -f` script.
    pub render_ms: f64,
    /// Loading that script into an empty namespace.
    pub load_ms: f64,
    /// Size of the full script.
    pub full_text_bytes: usize,
    /// Size of the ruleset.
    pub stats: Stats,
    /// One policy changed.
    pub policy_change: Change,
    /// One pod added on the node.
    pub pod_added: Change,
}

impl Run {
    /// Full sync: compile + render + load.
    pub fn full_sync_ms(&self) -> f64 {
        self.compile_ms + self.render_ms + self.load_ms
    }
}

/// Heap held by the agent's policy state at one size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Memory {
    /// The model of the whole cluster (namespaces, pods, policies).
    pub model_bytes: Option<u64>,
    /// The policies' part of `model_bytes` (the rest is pods and
    /// namespaces); `None` until measured.
    pub policies_bytes: Option<u64>,
    /// The node's compiled ruleset, kept to render deltas against, and the
    /// compiler's cache of its peer sets (`weft_policy::Compiler`).
    pub ruleset_bytes: Option<u64>,
    /// Both.
    pub total_bytes: Option<u64>,
    /// `total_bytes` / pods.
    pub bytes_per_pod: Option<f64>,
    /// The process's peak RSS so far (every earlier size and step
    /// included): an upper bound, for context.
    pub process_peak_rss_bytes: Option<u64>,
}

impl Memory {
    /// From heap counters read before the model, after it and after the
    /// ruleset (each `None` when the allocator does not report).
    pub fn from_counters(
        pods: usize,
        base: Option<u64>,
        with_model: Option<u64>,
        with_ruleset: Option<u64>,
        peak_rss: Option<u64>,
    ) -> Memory {
        let model = base.zip(with_model).map(|(b, m)| m.saturating_sub(b));
        let ruleset = with_model
            .zip(with_ruleset)
            .map(|(m, r)| r.saturating_sub(m));
        let total = model.zip(ruleset).map(|(m, r)| m + r);
        Memory {
            model_bytes: model,
            policies_bytes: None,
            ruleset_bytes: ruleset,
            total_bytes: total,
            bytes_per_pod: total.map(|t| round3(t as f64 / pods.max(1) as f64)),
            process_peak_rss_bytes: peak_rss,
        }
    }
}

fn spread(runs: &[Run], f: impl Fn(&Run) -> f64) -> Option<Spread> {
    Spread::of(&runs.iter().map(f).collect::<Vec<_>>())
}

fn change_report(runs: &[Run], pick: fn(&Run) -> &Change) -> Value {
    let first = runs.first().map(pick);
    json!({
        "total_ms": spread(runs, |r| pick(r).total_ms()),
        "compile_ms": spread(runs, |r| pick(r).compile_ms),
        "render_ms": spread(runs, |r| pick(r).render_ms),
        "load_ms": spread(runs, |r| pick(r).load_ms),
        "delta_text_bytes": first.map(|c| c.delta_text_bytes),
        "delta_commands": first.map(|c| c.delta_commands),
    })
}

/// The figures of one size: each timing as the median (min, max) of the
/// runs; sizes and counts from the first run (they are deterministic).
pub fn size_report(pods: usize, memory: &Memory, runs: &[Run]) -> Value {
    let first = runs.first();
    json!({
        "pods": pods,
        "policies": pods,
        "nodes": super::synth::node_count(pods),
        "local_pods": first.map(|r| r.local_pods),
        "full_sync_ms": spread(runs, Run::full_sync_ms),
        "compile_ms": spread(runs, |r| r.compile_ms),
        "render_ms": spread(runs, |r| r.render_ms),
        "load_ms": spread(runs, |r| r.load_ms),
        "policy_change": change_report(runs, |r| &r.policy_change),
        "pod_added": change_report(runs, |r| &r.pod_added),
        "ruleset": first.map(|r| json!({
            "sets": r.stats.sets,
            "maps": r.stats.maps,
            "elements": r.stats.elements,
            "chains": r.stats.chains,
            "rules": r.stats.rules,
            "full_text_bytes": r.full_text_bytes,
        })),
        "memory": memory,
    })
}

/// Whether `value` (a median) is within `max`; `None` when not measured.
fn within(value: &Value, max: f64) -> Option<bool> {
    value.as_f64().map(|v| v <= max)
}

/// The whole report: every size, and the targets judged at
/// [`TARGET_PODS`] (`null` when that size was not measured).
pub fn report(runs: usize, sizes: Vec<Value>) -> Value {
    let target = sizes.iter().find(|s| s["pods"] == TARGET_PODS);
    let met = target.map(|t| {
        json!({
            "full_sync_ms": within(&t["full_sync_ms"]["median"], FULL_SYNC_MS_MAX),
            "policy_change_ms": within(&t["policy_change"]["total_ms"]["median"], POLICY_CHANGE_MS_MAX),
            "bytes_per_pod": within(&t["memory"]["bytes_per_pod"], BYTES_PER_POD_MAX),
        })
    });
    json!({
        "benchmark": "policy",
        "runs": runs,
        "statistic": "median of the runs (nearest rank), with min and max",
        "machine": crate::machine::machine(),
        "method": {
            "model": "synthesized: N pods over N/100 nodes and N/100 namespaces, N policies in 5 shapes",
            "programmed": "one node's share (its ~100 pods), loaded with nft -f into a weft network namespace",
            "full_sync": "compile + render_full + nft -f into an empty namespace",
            "change": "recompile (weft_policy::Compiler, reusing unchanged peer sets) + render_delta + nft -f of the delta",
            "memory": "in-process heap (glibc mallinfo2) of the model plus the node's ruleset and compiler cache; weftd not run",
        },
        "sizes": sizes,
        "targets": {
            "at_pods": TARGET_PODS,
            "full_sync_ms_max": FULL_SYNC_MS_MAX,
            "policy_change_ms_max": POLICY_CHANGE_MS_MAX,
            "bytes_per_pod_max": BYTES_PER_POD_MAX,
        },
        "met": met,
    })
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
