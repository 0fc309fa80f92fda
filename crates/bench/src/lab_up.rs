//! `lab up` and `lab down` wall-clock: from the start of `up` to every pod
//! serving (each pod's echo server listening: `up` returns then), to every
//! agent having applied the datastore's last revision, and to a full mesh
//! of TCP probes connecting; then `down`.
//!
//! Each run builds the lab in a state directory of its own
//! (/run/weft/bench-lab-up/lab) and removes it, also on failure and on
//! SIGINT/SIGTERM/SIGHUP. The lab does not expose its phases (underlay,
//! nodes, agents, pods) separately, so only the totals are reported.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use weft_lab::model::{self, ModelKind};
use weft_lab::probe::{self, ProbeQuery};
use weft_lab::report;
use weft_model::Protocol;

use crate::labs::{AGENT_TIMEOUT, BenchLab, RunDir, own_dir, up_opts};
use crate::stats::{Spread, round3};
use crate::supervise::Supervisor;

/// Target: `lab up` to serving and synced, in seconds.
pub const UP_SECONDS_MAX: f64 = 10.0;

/// How long the full mesh of probes may take to connect after the agents
/// report being in sync.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for [`run`].
#[derive(Debug, Clone)]
pub struct LabUpOpts {
    /// Nodes per lab.
    pub nodes: usize,
    /// The namespaces and pods `lab up` creates.
    pub model: ModelKind,
    /// Labs brought up and down, one after the other.
    pub runs: usize,
    /// weftd's backend.
    pub backend: String,
    /// The directory with `weft`, `weftd` and `weftctl`.
    pub bin_dir: PathBuf,
}

impl Default for LabUpOpts {
    fn default() -> Self {
        LabUpOpts {
            nodes: 3,
            model: ModelKind::Netpol,
            runs: 3,
            backend: "vxlan".into(),
            bin_dir: own_dir(),
        }
    }
}

/// One bring-up and tear-down, in seconds from the start of `lab up`
/// (`down_s` from the start of `lab down`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// `lab up` returned: underlay, nodes, agents' node state, every pod
    /// attached and its server listening.
    pub serving_s: f64,
    /// Every agent reports the datastore's last revision as applied.
    pub synced_s: f64,
    /// A full mesh of TCP probes to port 80 connected (`None` without
    /// pods).
    pub reachable_s: Option<f64>,
    /// Pods per second of `lab up` as a whole (`None` without pods).
    pub pods_per_s: Option<f64>,
    /// `lab down`.
    pub down_s: f64,
}

/// Runs the benchmark and returns its report as JSON.
///
/// Needs root. Call it from the main thread before it starts other threads
/// (see [`Supervisor`]).
pub fn run(opts: &LabUpOpts) -> Result<Value> {
    if opts.runs == 0 || opts.nodes == 0 {
        bail!("--runs and --nodes must be positive");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab-up benchmark builds labs in network namespaces: run it as root");
    }
    let supervisor = Supervisor::start()?;
    let sup = supervisor.handle();
    let run_dir = RunDir::acquire("lab-up")?;
    let names: Vec<String> = (1..=opts.nodes)
        .map(weft_lab::underlay::node_name)
        .collect();
    let pods = model::build(opts.model, &names).pods.len();

    let mut samples = Vec::with_capacity(opts.runs);
    for i in 0..opts.runs {
        if sup.interrupted() {
            bail!("lab-up benchmark interrupted");
        }
        let s = one(opts, &run_dir, pods).with_context(|| format!("run {}", i + 1))?;
        samples.push(s);
    }
    Ok(report(opts, pods, &samples))
}

fn one(opts: &LabUpOpts, run_dir: &RunDir, pods: usize) -> Result<Sample> {
    let uo = up_opts(
        opts.nodes,
        &opts.backend,
        vec![4],
        opts.model,
        &opts.bin_dir,
    );
    let start = Instant::now();
    let (lab, up) = BenchLab::up(run_dir.lab_dir("lab"), &uo)?;
    // BenchLab::up first removes leftovers of an earlier run; only `lab
    // up` itself counts.
    let offset = start.elapsed() - up;
    let since = |t: Instant| (t - start - offset).as_secs_f64();
    report::sync(&lab.layout, AGENT_TIMEOUT).context("wait for the agents")?;
    let synced = Instant::now();
    let reachable = if pods == 0 {
        None
    } else {
        wait_reachable(&lab)?;
        Some(Instant::now())
    };
    let down = lab.down()?;
    let serving_s = up.as_secs_f64();
    Ok(Sample {
        serving_s: round3(serving_s),
        synced_s: round3(since(synced)),
        reachable_s: reachable.map(|t| round3(since(t))),
        pods_per_s: (pods > 0).then(|| round3(pods as f64 / serving_s)),
        down_s: round3(down.as_secs_f64()),
    })
}

/// Probes every pod from every pod on TCP port 80 until all connect.
fn wait_reachable(lab: &BenchLab) -> Result<()> {
    let query = ProbeQuery {
        from: Vec::new(),
        to: Vec::new(),
        port: 80,
        protocol: Protocol::Tcp,
        families: Vec::new(),
        timeout: Duration::from_millis(500),
    };
    let deadline = Instant::now() + REACH_TIMEOUT;
    loop {
        let records = probe::probe(&lab.state, &query)?;
        let failed: Vec<String> = records
            .iter()
            .filter(|r| !r.connected)
            .map(|r| format!("{} -> {}", r.from, r.to))
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} of {} probes still fail {REACH_TIMEOUT:?} after the agents synced: {}",
                failed.len(),
                records.len(),
                failed.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The report: every sample, the spread of each figure, the target.
pub fn report(opts: &LabUpOpts, pods: usize, samples: &[Sample]) -> Value {
    let col = |f: fn(&Sample) -> f64| Spread::of(&samples.iter().map(f).collect::<Vec<_>>());
    let some = |f: fn(&Sample) -> Option<f64>| {
        Spread::of(&samples.iter().filter_map(f).collect::<Vec<_>>())
    };
    // The target covers serving and synced, whichever comes last.
    let ready = col(|s| s.serving_s.max(s.synced_s));
    let met = ready.map(|r| r.median < UP_SECONDS_MAX);
    json!({
        "benchmark": "lab-up",
        "nodes": opts.nodes,
        "model": format!("{:?}", opts.model).to_lowercase(),
        "pods": pods,
        "backend": opts.backend,
        "runs": opts.runs,
        "statistic": "median of the runs (nearest rank), with min and max",
        "machine": crate::machine::machine(),
        "phases": Value::Null,
        "phases_note": "the lab does not expose per-phase timings; totals only",
        "serving_s": col(|s| s.serving_s),
        "synced_s": col(|s| s.synced_s),
        "ready_s": ready,
        "reachable_s": some(|s| s.reachable_s),
        "pods_per_s": some(|s| s.pods_per_s),
        "down_s": col(|s| s.down_s),
        "samples": samples,
        "targets": { "ready_s_max": UP_SECONDS_MAX },
        "met": { "ready_s": met },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(up: f64, synced: f64) -> Sample {
        Sample {
            serving_s: up,
            synced_s: synced,
            reachable_s: Some(synced + 0.1),
            pods_per_s: Some(9.0 / up),
            down_s: 1.0,
        }
    }

    #[test]
    fn ready_is_the_later_of_serving_and_synced() {
        let opts = LabUpOpts::default();
        let r = report(
            &opts,
            9,
            &[sample(4.0, 4.5), sample(6.0, 5.0), sample(5.0, 5.5)],
        );
        assert_eq!(r["ready_s"]["median"], 5.5);
        assert_eq!(r["ready_s"]["max"], 6.0);
        assert_eq!(r["serving_s"]["median"], 5.0);
        assert_eq!(r["reachable_s"]["runs"], 3);
        assert_eq!(r["model"], "netpol");
        assert_eq!(r["met"]["ready_s"], true);
        let slow = report(&opts, 9, &[sample(12.0, 12.5)]);
        assert_eq!(slow["met"]["ready_s"], false);
        let none = report(&opts, 0, &[]);
        assert!(none["met"]["ready_s"].is_null());
    }
}
