//! `weftctl bench policy`: programming time and agent memory of
//! NetworkPolicy at scale (issue 4).
//!
//! For each size `N`, a synthesized cluster ([`synth`]: `N` pods over
//! `N / 100` nodes, `N` policies) is compiled for one node, and that node's
//! table is really loaded with `nft -f` into a `weft…` network namespace
//! of its own (removed afterwards, also on failure or SIGINT). Measured,
//! as the agent does them:
//!
//! - full sync: compile + render the whole table + load it into an empty
//!   namespace;
//! - one policy change: recompile (with the [`Compiler`] of the full sync,
//!   which reuses unchanged peer sets) + [`render_delta`] + load the delta;
//! - one pod added on the node: the same;
//! - memory: heap bytes the agent's state holds — the model of the whole
//!   cluster plus the node's compiled ruleset and the compiler's cache of
//!   peer sets — measured in-process with
//!   the allocator's own counters ([`heap`]), not by running `weftd`: the
//!   lab's file datastore re-reads the whole file on every change, which at
//!   50,000 pods would measure the datastore, not the policy state.
//!
//! Targets at 10,000 pods and 10,000 policies: full sync ≤ 1 s, one policy
//! change ≤ 50 ms, memory ≤ 2 KiB per pod.

pub mod heap;
pub(crate) mod load;
mod report;
pub mod synth;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use weft_policy::Compiler;
use weft_policy::nft::{render_delta, render_full};
use weft_testkit::NetNs;

pub use report::{
    BYTES_PER_POD_MAX, Change, FULL_SYNC_MS_MAX, Memory, POLICY_CHANGE_MS_MAX, Run, TARGET_PODS,
    report, size_report,
};

use crate::supervise::Supervisor;

/// Options for [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBenchOpts {
    /// Cluster sizes in pods (as many policies), measured in this order.
    pub sizes: Vec<usize>,
    /// Repetitions of the timed steps per size (the median is reported).
    pub runs: usize,
}

impl Default for PolicyBenchOpts {
    fn default() -> Self {
        PolicyBenchOpts {
            sizes: vec![1_000, 10_000, 50_000],
            runs: 3,
        }
    }
}

/// Runs the benchmark and returns its report as JSON.
///
/// Needs root (the loads happen in a network namespace). Call it from the
/// main thread before it starts other threads (see [`Supervisor`]).
pub fn run(opts: &PolicyBenchOpts) -> Result<Value> {
    if opts.runs == 0 || opts.sizes.is_empty() || opts.sizes.contains(&0) {
        bail!("--runs and every --sizes entry must be positive");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the policy benchmark loads nftables tables in network namespaces: run it as root");
    }
    let supervisor = Supervisor::start()?;
    let sup = supervisor.handle();
    let mut sizes = Vec::with_capacity(opts.sizes.len());
    for &pods in &opts.sizes {
        let memory = memory(pods).with_context(|| format!("memory at {pods} pods"))?;
        let mut runs = Vec::with_capacity(opts.runs);
        for i in 0..opts.runs {
            if sup.interrupted() {
                bail!("policy benchmark interrupted");
            }
            runs.push(one(pods).with_context(|| format!("{pods} pods, run {}", i + 1))?);
        }
        sizes.push(size_report(pods, &memory, &runs));
    }
    Ok(report(opts.runs, sizes))
}

/// The heap the agent's state takes at `pods` pods: the model, then the
/// node's ruleset and the compiler's cache next to it. Measured before any
/// timed run, so that the allocator's free lists hold nothing of an earlier
/// size's state.
fn memory(pods: usize) -> Result<Memory> {
    let base = heap::in_use();
    let mut cluster = synth::cluster(pods)?;
    let with_model = heap::in_use();
    let mut compiler = Compiler::new();
    let ruleset = compiler.compile(&cluster.view, &cluster.node);
    let with_ruleset = heap::in_use();
    let mut memory = Memory::from_counters(pods, base, with_model, with_ruleset, heap::peak_rss());
    // The policies' share of the model: what freeing them gives back.
    let policies = std::mem::take(&mut cluster.view.policies);
    let with_policies = heap::in_use();
    drop(policies);
    memory.policies_bytes = with_policies
        .zip(heap::in_use())
        .map(|(w, wo)| w.saturating_sub(wo));
    drop((ruleset, compiler, cluster));
    Ok(memory)
}

/// One timed run at `pods` pods, in a namespace of its own.
fn one(pods: usize) -> Result<Run> {
    let mut cluster = synth::cluster(pods)?;
    let local_pods = cluster.node.pods.len();
    let ns = NetNs::new("pol").context("create the benchmark's network namespace")?;

    let mut compiler = Compiler::new();
    let started = Instant::now();
    let ruleset = compiler.compile(&cluster.view, &cluster.node);
    let compile_time = started.elapsed();
    let started = Instant::now();
    let full = render_full(&ruleset);
    let render_time = started.elapsed();
    let full_load = load::nft(&ns, &full).context("full load")?;
    let stats = ruleset.stats();

    cluster.change_policy()?;
    let (policy_change, ruleset) =
        change(&ns, &cluster, &mut compiler, ruleset).context("policy change")?;
    cluster.add_local_pod();
    let (pod_added, _) = change(&ns, &cluster, &mut compiler, ruleset).context("pod added")?;

    Ok(Run {
        local_pods,
        compile_ms: ms(compile_time),
        render_ms: ms(render_time),
        load_ms: ms(full_load),
        full_text_bytes: full.len(),
        stats,
        policy_change,
        pod_added,
    })
}

/// Recompiles after a change, renders the delta against `old` (what the
/// kernel holds) and loads it; returns the figures and the new ruleset.
fn change(
    ns: &NetNs,
    cluster: &synth::Synthesized,
    compiler: &mut Compiler,
    old: weft_policy::nft::Ruleset,
) -> Result<(Change, weft_policy::nft::Ruleset)> {
    let started = Instant::now();
    let new = compiler.compile(&cluster.view, &cluster.node);
    let compile_time = started.elapsed();
    let started = Instant::now();
    let delta = render_delta(&old, &new)
        .context("the change left the node's table as it was: nothing to measure")?;
    let render_time = started.elapsed();
    let load_time = load::nft(ns, &delta)?;
    let change = Change {
        compile_ms: ms(compile_time),
        render_ms: ms(render_time),
        load_ms: ms(load_time),
        delta_text_bytes: delta.len(),
        delta_commands: delta.lines().filter(|l| !l.trim().is_empty()).count(),
    };
    Ok((change, new))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
