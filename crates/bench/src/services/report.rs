//! The Services benchmark's figures and their JSON report.

use std::time::Duration;

use serde_json::{Value, json};
use weft_proxy::nft::Stats;

use crate::policy::Change;
use crate::stats::{Spread, Summary, ratio, round3};

/// The size the programming targets are stated for (Services; each with
/// [`TARGET_ENDPOINTS`] endpoints).
pub const TARGET_SERVICES: usize = 10_000;
/// Endpoints per Service at the target size.
pub const TARGET_ENDPOINTS: usize = 10;
/// Target: full sync at the target size, milliseconds.
pub const FULL_SYNC_MS_MAX: f64 = 2000.0;
/// Target: one endpoint change along the agent's path (incremental
/// compile, hash, change batch, netlink commit), milliseconds.
pub const ENDPOINT_CHANGE_MS_MAX: f64 = 50.0;
/// Target: connect p50 with many Services over connect p50 with few.
pub const LATENCY_RATIO_MAX: f64 = 1.1;

/// One timed programming run at one size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    /// Compiling the node's table.
    pub compile_ms: f64,
    /// Rendering it as one `nft -f` script.
    pub render_ms: f64,
    /// Loading that script into an empty namespace.
    pub load_ms: f64,
    /// Size of the full script.
    pub full_text_bytes: usize,
    /// Size of the ruleset.
    pub stats: Stats,
    /// One endpoint removed.
    pub endpoint_removed: EndpointChange,
    /// The same endpoint added back.
    pub endpoint_added: EndpointChange,
}

/// One endpoint change along the agent's path (judged): from the new
/// Service and slice objects to the kernel's commit, as weftd's Service
/// pass runs it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AgentChange {
    /// [`weft_proxy::Compiler::update`]: compares every Service's inputs
    /// with the cached ones, recompiles the changed one and patches the
    /// table, returning the change.
    pub compile_ms: f64,
    /// [`weft_proxy::Compiler::hash`]: the table's stamp from per-part
    /// hashes.
    pub hash_ms: f64,
    /// [`weft_proxy::change_batch`] of the change.
    pub batch_ms: f64,
    /// Committing the batch.
    pub commit_ms: f64,
    /// Services the pass compiled anew.
    pub recompiled: usize,
    /// Messages in the batch.
    pub messages: usize,
}

impl AgentChange {
    /// The judged figure: the whole path.
    pub fn total_ms(&self) -> f64 {
        self.compile_ms + self.hash_ms + self.batch_ms + self.commit_ms
    }
}

/// One endpoint change, applied three ways from the same table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointChange {
    /// The agent's path (judged).
    pub agent: AgentChange,
    /// From a compiled table: [`weft_proxy::delta_batch`] of the two whole
    /// rulesets (the figure judged before the incremental compiler).
    pub batch_render_ms: f64,
    /// Committing the batch.
    pub batch_commit_ms: f64,
    /// Messages in the batch (its commands).
    pub batch_messages: usize,
    /// Size of the batch as sent.
    pub batch_bytes: usize,
    /// The `nft` path, for comparison (the agent's fallback):
    /// `render_delta` and `nft -f`, with the recompile before both.
    pub nft: Change,
}

impl EndpointChange {
    /// Render and commit of the batch of two whole rulesets.
    pub fn batch_ms(&self) -> f64 {
        self.batch_render_ms + self.batch_commit_ms
    }
}

impl Run {
    /// Full sync: compile + render + load.
    pub fn full_sync_ms(&self) -> f64 {
        self.compile_ms + self.render_ms + self.load_ms
    }
}

/// Heap held by the Services' model and the node's table at one size
/// (`None` where the allocator does not report).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Memory {
    /// Services and EndpointSlices.
    pub model_bytes: Option<u64>,
    /// The compiled table, kept to render deltas against.
    pub ruleset_bytes: Option<u64>,
    /// The process's peak RSS so far: an upper bound, for context.
    pub process_peak_rss_bytes: Option<u64>,
}

impl Memory {
    /// The figures as JSON, with the total and its share per Service.
    pub fn to_json(&self, services: usize) -> Value {
        let total = self.model_bytes.zip(self.ruleset_bytes).map(|(m, r)| m + r);
        json!({
            "model_bytes": self.model_bytes,
            "ruleset_bytes": self.ruleset_bytes,
            "total_bytes": total,
            "total_mib": total.map(|t| round3(t as f64 / (1 << 20) as f64)),
            "bytes_per_service": total.map(|t| round3(t as f64 / services.max(1) as f64)),
            "process_peak_rss_bytes": self.process_peak_rss_bytes,
        })
    }
}

fn spread(runs: &[Run], f: impl Fn(&Run) -> f64) -> Option<Spread> {
    Spread::of(&runs.iter().map(f).collect::<Vec<_>>())
}

fn change_report(runs: &[Run], pick: fn(&Run) -> &EndpointChange) -> Value {
    let first = runs.first().map(pick);
    let nft = |r: &Run| pick(r).nft;
    let agent = |r: &Run| pick(r).agent;
    json!({
        "agent": {
            "total_ms": spread(runs, |r| agent(r).total_ms()),
            "compile_ms": spread(runs, |r| agent(r).compile_ms),
            "hash_ms": spread(runs, |r| agent(r).hash_ms),
            "batch_ms": spread(runs, |r| agent(r).batch_ms),
            "commit_ms": spread(runs, |r| agent(r).commit_ms),
            "recompiled_services": first.map(|c| c.agent.recompiled),
            "batch_messages": first.map(|c| c.agent.messages),
        },
        "render_and_load_ms": spread(runs, |r| pick(r).batch_ms()),
        "with_full_recompile_ms": spread(runs, |r| nft(r).compile_ms + pick(r).batch_ms()),
        "compile_ms": spread(runs, |r| nft(r).compile_ms),
        "render_ms": spread(runs, |r| pick(r).batch_render_ms),
        "load_ms": spread(runs, |r| pick(r).batch_commit_ms),
        "delta_commands": first.map(|c| c.batch_messages),
        "delta_bytes": first.map(|c| c.batch_bytes),
        "nft": {
            "render_and_load_ms": spread(runs, |r| nft(r).render_ms + nft(r).load_ms),
            "with_full_recompile_ms": spread(runs, |r| nft(r).total_ms()),
            "render_ms": spread(runs, |r| nft(r).render_ms),
            "load_ms": spread(runs, |r| nft(r).load_ms),
            "delta_text_bytes": first.map(|c| c.nft.delta_text_bytes),
            "delta_commands": first.map(|c| c.nft.delta_commands),
        },
    })
}

/// The programming figures of one size: each timing as the median (min,
/// max) of the runs; sizes and counts from the first run.
pub fn size_report(services: usize, endpoints: usize, memory: &Memory, runs: &[Run]) -> Value {
    json!({
        "services": services,
        "endpoints_per_service": endpoints,
        "full_sync_ms": spread(runs, Run::full_sync_ms),
        "compile_ms": spread(runs, |r| r.compile_ms),
        "render_ms": spread(runs, |r| r.render_ms),
        "load_ms": spread(runs, |r| r.load_ms),
        "endpoint_removed": change_report(runs, |r| &r.endpoint_removed),
        "endpoint_added": change_report(runs, |r| &r.endpoint_added),
        "ruleset": runs.first().map(|r| json!({
            "sets": r.stats.sets,
            "maps": r.stats.maps,
            "elements": r.stats.elements,
            "chains": r.stats.chains,
            "rules": r.stats.rules,
            "full_text_bytes": r.full_text_bytes,
        })),
        "memory": memory.to_json(services),
    })
}

/// One latency phase: the table it ran with and its connect times.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Services programmed.
    pub services: usize,
    /// Connect times.
    pub samples: Vec<Duration>,
}

/// The latency figures: each phase, then the phases pooled per table size
/// and the ratio of the pooled p50s (and p99s), many over few.
pub fn latency_report(few: usize, many: usize, warmup: usize, phases: &[Phase]) -> Value {
    let pooled = |services: usize| {
        let all: Vec<Duration> = phases
            .iter()
            .filter(|p| p.services == services)
            .flat_map(|p| p.samples.iter().copied())
            .collect();
        Summary::of(&all)
    };
    let (small, big) = (pooled(few), pooled(many));
    let both = small.zip(big);
    json!({
        "services_few": few,
        "services_many": many,
        "warmup_connects_per_phase": warmup,
        "phases": phases.iter().map(|p| json!({
            "services": p.services,
            "connect": Summary::of(&p.samples),
        })).collect::<Vec<_>>(),
        "few": small,
        "many": big,
        "ratio_p50": both.and_then(|(s, b)| ratio(b.p50_ms, s.p50_ms)),
        "ratio_p99": both.and_then(|(s, b)| ratio(b.p99_ms, s.p99_ms)),
    })
}

/// Whether `value` (a median or ratio) is within `max`; `None` when not
/// measured.
fn within(value: &Value, max: f64) -> Option<bool> {
    value.as_f64().map(|v| v <= max)
}

/// The whole report; the programming targets are judged at
/// [`TARGET_SERVICES`] × [`TARGET_ENDPOINTS`] (`null` when that size was
/// not measured), the latency target whenever the latency ran.
pub fn report(runs: usize, sizes: Vec<Value>, latency: Option<Value>) -> Value {
    let target = sizes.iter().find(|s| {
        s["services"] == TARGET_SERVICES && s["endpoints_per_service"] == TARGET_ENDPOINTS
    });
    let change_ms = |t: &Value| {
        let removed = t["endpoint_removed"]["agent"]["total_ms"]["median"].as_f64();
        let added = t["endpoint_added"]["agent"]["total_ms"]["median"].as_f64();
        removed.zip(added).map(|(r, a)| r.max(a))
    };
    let met = json!({
        "full_sync_ms": target.and_then(|t| within(&t["full_sync_ms"]["median"], FULL_SYNC_MS_MAX)),
        "endpoint_change_ms": target
            .and_then(change_ms)
            .map(|ms| ms <= ENDPOINT_CHANGE_MS_MAX),
        "latency_ratio_p50": latency
            .as_ref()
            .and_then(|l| within(&l["ratio_p50"], LATENCY_RATIO_MAX)),
    });
    json!({
        "benchmark": "services",
        "runs": runs,
        "statistic": "programming: median of the runs (nearest rank), with min and max; latency: nearest-rank percentiles of every connect",
        "machine": crate::machine::machine(),
        "method": {
            "model": "synthesized: N ClusterIP Services (one TCP port) with M ready endpoints each, one EndpointSlice per Service",
            "full_sync": "compile + render_full + nft -f into an empty weft network namespace",
            "endpoint_change": "the agent's path (judged, `agent`): Compiler::update from the new Services and slices (only the changed Service recompiled), Compiler::hash, change_batch, one netlink transaction (NETLINK_NETFILTER) in a namespace of its own; reported beside it from the same table: delta_batch of the two whole rulesets + commit (the figure judged before), with a full recompile before it, and render_delta + nft -f in a second namespace",
            "memory": "in-process heap (glibc mallinfo2) of the Services and slices plus the compiled table; weftd not run",
            "latency": "TCP connect time (std TcpStream::connect, one thread in the client pod's netns) to ClusterIP:80 → echo server pod; tables alternate few, many, few, many in the same namespaces, each loaded with nft -f before its phase",
        },
        "programming": sizes,
        "latency": latency,
        "targets": {
            "at_services": TARGET_SERVICES,
            "at_endpoints_per_service": TARGET_ENDPOINTS,
            "full_sync_ms_max": FULL_SYNC_MS_MAX,
            "endpoint_change_ms_max": ENDPOINT_CHANGE_MS_MAX,
            "latency_ratio_p50_max": LATENCY_RATIO_MAX,
        },
        "met": met,
    })
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
