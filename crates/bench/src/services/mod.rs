//! `weftctl bench services`: programming time, memory and first-packet
//! latency of Services at scale (issue 5, Performance).
//!
//! Programming: for each size (`N` Services × `M` endpoints, [`synth`]),
//! the node's proxy table is compiled and loaded with `nft -f` into a
//! `weft…` network namespace of its own; then one endpoint is removed and
//! added back, each applied as the agent applies it (judged: a kept
//! [`Compiler`] updated from the new objects, its hash, [`change_batch`]
//! of its change committed over netlink, in a third namespace), and, for
//! comparison, from the two whole rulesets: a [`delta_batch`] committed
//! over netlink, and a [`render_delta`] through `nft -f` in a second
//! namespace holding the same table. Memory: heap bytes of the Services,
//! slices and the agent's [`Compiler`] (its table and per-Service cache;
//! [`crate::policy::heap`]).
//!
//! Latency: a node namespace with a client pod and a server pod ([`lab`]);
//! the table with few Services and the one with many are loaded in turn
//! (few, many, few, many, bracketing drift) and TCP connects from the
//! client to Service 0's ClusterIP are timed in each phase. Every
//! namespace is removed afterwards, also on failure or SIGINT.

pub mod lab;
mod report;
pub mod synth;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use weft_proxy::nft::NftSocket;
use weft_proxy::{
    Compiler, Ruleset, change_batch, compile, delta_batch, render_delta, render_full,
};
use weft_testkit::NetNs;

pub use report::{
    AgentChange, ENDPOINT_CHANGE_MS_MAX, EndpointChange, FULL_SYNC_MS_MAX, LATENCY_RATIO_MAX,
    Memory, Phase, Run, TARGET_ENDPOINTS, TARGET_SERVICES, latency_report, report, size_report,
};

use crate::policy::load::nft;
use crate::policy::{Change, heap};
use crate::supervise::Supervisor;

/// Options for [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesBenchOpts {
    /// Programming sizes in Services, measured in this order.
    pub sizes: Vec<usize>,
    /// Endpoints per Service.
    pub endpoints: usize,
    /// Repetitions of the timed programming steps per size.
    pub runs: usize,
    /// Services of the latency's small table.
    pub few: usize,
    /// Services of the latency's big table.
    pub many: usize,
    /// Timed connects per latency phase (0 skips the latency).
    pub connections: usize,
    /// Untimed connects before each phase's timed ones.
    pub warmup: usize,
}

impl Default for ServicesBenchOpts {
    fn default() -> Self {
        ServicesBenchOpts {
            sizes: vec![1_000, 10_000],
            endpoints: 10,
            runs: 3,
            few: 10,
            many: 10_000,
            connections: 2_000,
            warmup: 100,
        }
    }
}

/// Runs the benchmark and returns its report as JSON.
///
/// Needs root. Call it from the main thread before it starts other threads
/// (see [`Supervisor`]).
pub fn run(opts: &ServicesBenchOpts) -> Result<Value> {
    if opts.runs == 0 || opts.sizes.contains(&0) || opts.few == 0 || opts.many == 0 {
        bail!("--runs, --few, --many and every --sizes entry must be positive");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the Services benchmark works in network namespaces: run it as root");
    }
    let supervisor = Supervisor::start()?;
    let sup = supervisor.handle();
    let mut sizes = Vec::with_capacity(opts.sizes.len());
    for &services in &opts.sizes {
        let at = || format!("{services} Services × {} endpoints", opts.endpoints);
        let memory =
            memory(services, opts.endpoints).with_context(|| format!("memory at {}", at()))?;
        let mut runs = Vec::with_capacity(opts.runs);
        for i in 0..opts.runs {
            if sup.interrupted() {
                bail!("Services benchmark interrupted");
            }
            runs.push(
                one(services, opts.endpoints)
                    .with_context(|| format!("{}, run {}", at(), i + 1))?,
            );
        }
        sizes.push(size_report(services, opts.endpoints, &memory, &runs));
    }
    let latency = if opts.connections == 0 {
        None
    } else {
        let phases = latency(opts, || sup.interrupted()).context("latency")?;
        Some(latency_report(opts.few, opts.many, opts.warmup, &phases))
    };
    Ok(report(opts.runs, sizes, latency))
}

/// The heap of the Services' model, then of the agent's compiler (table
/// and per-Service cache) next to it.
fn memory(services: usize, endpoints: usize) -> Result<Memory> {
    let base = heap::in_use();
    let cluster = synth::cluster(services, endpoints)?;
    let with_model = heap::in_use();
    let mut ruleset = Compiler::new();
    ruleset.update(&cluster.services, &cluster.slices, &synth::node());
    let with_ruleset = heap::in_use();
    let memory = Memory {
        model_bytes: base.zip(with_model).map(|(b, m)| m.saturating_sub(b)),
        ruleset_bytes: with_model
            .zip(with_ruleset)
            .map(|(m, r)| r.saturating_sub(m)),
        process_peak_rss_bytes: heap::peak_rss(),
    };
    drop((ruleset, cluster));
    Ok(memory)
}

/// One timed programming run, in namespaces of its own: the timed full
/// load and the whole-ruleset netlink deltas in one, the `nft` deltas in a
/// second one and the agent's path in a third, each loaded with the same
/// table.
fn one(services: usize, endpoints: usize) -> Result<Run> {
    let mut cluster = synth::cluster(services, endpoints)?;
    let ns = NetNs::new("svc").context("create the benchmark's network namespace")?;
    let ns_nft = NetNs::new("svcn").context("create the benchmark's second namespace")?;
    let ns_agent = NetNs::new("svca").context("create the benchmark's third namespace")?;
    let mut compiler = Compiler::new();
    compiler.update(&cluster.services, &cluster.slices, &synth::node());
    let started = Instant::now();
    let ruleset = compile(&cluster.services, &cluster.slices, &synth::node());
    let compile_time = started.elapsed();
    let started = Instant::now();
    let full = render_full(&ruleset);
    let render_time = started.elapsed();
    let load_time = nft(&ns, &full).context("full load")?;
    nft(&ns_nft, &full).context("full load of the second namespace")?;
    nft(&ns_agent, &render_full(compiler.ruleset())).context("full load of the third namespace")?;
    let stats = ruleset.stats();
    let socket = |ns: &NetNs| -> Result<NftSocket> {
        ns.run(NftSocket::new)
            .context("enter a benchmark namespace")?
            .context("open a netfilter socket in a benchmark namespace")
    };
    let (mut socket, mut agent_socket) = (socket(&ns)?, socket(&ns_agent)?);
    let mut deltas = Deltas {
        socket: &mut socket,
        ns_nft: &ns_nft,
        agent_socket: &mut agent_socket,
        compiler: &mut compiler,
    };

    // The agent's path first, both ways, so that the whole-table
    // recompiles of the other paths (hundreds of megabytes allocated and
    // freed) do not weigh on its allocations; then the others from the
    // same table.
    let removed = cluster.remove_endpoint()?;
    let agent_removed = deltas.agent(&cluster).context("endpoint removed")?;
    cluster.add_endpoint(removed);
    let agent_added = deltas.agent(&cluster).context("endpoint added")?;
    let removed = cluster.remove_endpoint()?;
    let (endpoint_removed, ruleset) = deltas
        .change(&cluster, ruleset, agent_removed)
        .context("endpoint removed")?;
    cluster.add_endpoint(removed);
    let (endpoint_added, _) = deltas
        .change(&cluster, ruleset, agent_added)
        .context("endpoint added")?;
    Ok(Run {
        compile_ms: ms(compile_time),
        render_ms: ms(render_time),
        load_ms: ms(load_time),
        full_text_bytes: full.len(),
        stats,
        endpoint_removed,
        endpoint_added,
    })
}

/// Where the three kinds of delta go: the netlink socket of the timed
/// namespace, the namespace that takes `nft -f`, and the agent's compiler
/// with the socket of its namespace.
struct Deltas<'a> {
    socket: &'a mut NftSocket,
    ns_nft: &'a NetNs,
    agent_socket: &'a mut NftSocket,
    compiler: &'a mut Compiler,
}

impl Deltas<'_> {
    /// A full recompile and the difference from `old` both ways, reported
    /// beside `agent`, the same change along the agent's path.
    fn change(
        &mut self,
        cluster: &synth::Synthesized,
        old: Ruleset,
        agent: AgentChange,
    ) -> Result<(EndpointChange, Ruleset)> {
        let nothing = "the change left the node's table as it was: nothing to measure";
        let started = Instant::now();
        let new = compile(&cluster.services, &cluster.slices, &synth::node());
        let compile_time = started.elapsed();

        let started = Instant::now();
        let batch = delta_batch(&old, &new)
            .context("the change is not one a netlink batch carries")?
            .context(nothing)?;
        let batch_render = started.elapsed();
        let started = Instant::now();
        self.socket
            .commit(&batch)
            .context("commit the netlink batch")?;
        let batch_commit = started.elapsed();

        let started = Instant::now();
        let delta = render_delta(&old, &new).context(nothing)?;
        let render_time = started.elapsed();
        let load_time = nft(self.ns_nft, &delta)?;
        let change = EndpointChange {
            agent,
            batch_render_ms: ms(batch_render),
            batch_commit_ms: ms(batch_commit),
            batch_messages: batch.len(),
            batch_bytes: batch.encode(0).len(),
            nft: Change {
                compile_ms: ms(compile_time),
                render_ms: ms(render_time),
                load_ms: ms(load_time),
                delta_text_bytes: delta.len(),
                delta_commands: delta.lines().filter(|l| !l.trim().is_empty()).count(),
            },
        };
        Ok((change, new))
    }

    /// What weftd's Service pass does with the new objects: update the
    /// kept compiler (only the changed Service recompiled), hash the table
    /// for the stamp, encode the change and commit it.
    fn agent(&mut self, cluster: &synth::Synthesized) -> Result<AgentChange> {
        let started = Instant::now();
        let update = self
            .compiler
            .update(&cluster.services, &cluster.slices, &synth::node());
        let compile = started.elapsed();
        let started = Instant::now();
        let hash = self.compiler.hash().len();
        let hash_time = started.elapsed();
        let started = Instant::now();
        let batch = change_batch(&update.change, self.compiler.ruleset())
            .context("the change is not one a netlink batch carries")?
            .context("the change left the node's table as it was: nothing to measure")?;
        let batch_time = started.elapsed();
        let started = Instant::now();
        self.agent_socket
            .commit(&batch)
            .context("commit the agent's netlink batch")?;
        let commit = started.elapsed();
        debug_assert_eq!(hash, 64);
        Ok(AgentChange {
            compile_ms: ms(compile),
            hash_ms: ms(hash_time),
            batch_ms: ms(batch_time),
            commit_ms: ms(commit),
            recompiled: update.recompiled,
            messages: batch.len(),
        })
    }
}

/// The latency phases: few, many, few, many, in the same namespaces.
fn latency(opts: &ServicesBenchOpts, interrupted: impl Fn() -> bool) -> Result<Vec<Phase>> {
    let node = synth::node();
    let table = |services: usize| -> Result<String> {
        let c = synth::cluster(services, opts.endpoints)?;
        Ok(render_full(&compile(&c.services, &c.slices, &node)))
    };
    let (few, many) = (table(opts.few)?, table(opts.many)?);
    let lab = lab::Lab::new()?;
    let ip: Ipv4Addr = synth::CLUSTER_IP.parse().context("the ClusterIP")?;
    let mut phases = Vec::with_capacity(4);
    for (services, text) in [(opts.few, &few), (opts.many, &many)].repeat(2) {
        if interrupted() {
            bail!("Services benchmark interrupted");
        }
        nft(&lab.node, text).with_context(|| format!("load {services} Services"))?;
        let samples = lab
            .connects(ip, synth::SERVICE_PORT, opts.warmup, opts.connections)
            .with_context(|| format!("connects with {services} Services"))?;
        phases.push(Phase { services, samples });
    }
    Ok(phases)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
