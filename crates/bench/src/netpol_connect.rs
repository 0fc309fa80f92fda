//! `weftctl bench netpol-connect`: new TCP connections per second between
//! two lab pods with 1,000 unrelated NetworkPolicies present, against none,
//! in the same run and the same lab (issue 4; target ratio ≥ 0.9).
//!
//! The client connects to the server's echo port, sends a nonce and reads
//! the echo (weft-probe's TCP probe), sequentially, in a tight loop inside
//! the client pod's namespace. Phases alternate, `rounds` times: no
//! policies, then 1,000 policies (applied to the datastore, every agent
//! synced), then none again (deleted, synced), ending on a policy-free
//! phase. Each phase with policies is compared with the two policy-free
//! phases around it, and the median of those ratios is reported: one pair
//! of phases (about half a second each) cannot tell the policies' cost
//! from noise, and bracketing keeps drift over the run (agents settling
//! after `lab up`, other load on the machine) out of the ratio.
//!
//! The policies select other pods and namespaces only (namespaces `y` and
//! `z` of the netpol model, and labels no pod carries in `x`), so the two
//! pods in `x` stay non-isolated. Whether the agents enforce policy at all
//! is read from the kernel (table `inet weft-policy` in every node's
//! namespace) and reported as `enforced`: a run without it measures
//! nothing about policy.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use weft_lab::model::ModelKind;
use weft_lab::state::PodRecord;
use weft_lab::store::Store;
use weft_lab::{netns, report as lab_report};
use weft_model::Protocol;
use weft_probe::{ProbeOpts, Target, probe};

use crate::labs::{AGENT_TIMEOUT, BenchLab, RunDir, own_dir, up_opts};
use crate::stats::{Spread, ratio, round3};
use crate::supervise::Supervisor;

/// Target: connection rate with the policies / without.
pub const RATIO_MIN: f64 = 0.9;

/// The echo port the client connects to (every netpol-model pod serves it).
const PORT: u16 = 80;

/// Budget of one connection; a slower one counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Options for [`run`].
#[derive(Debug, Clone)]
pub struct NetpolConnectOpts {
    /// Connections per measured phase.
    pub connections: usize,
    /// Rounds of (with policies, without): `rounds` phases with and
    /// `rounds + 1` without.
    pub rounds: usize,
    /// Unrelated policies in the loaded phases.
    pub policies: usize,
    /// Connections before each phase, not counted (caches, conntrack).
    pub warmup: usize,
    /// Nodes of the lab; with two or more, client and server are on
    /// different nodes.
    pub nodes: usize,
    /// weftd's backend.
    pub backend: String,
    /// The directory with `weft`, `weftd` and `weftctl`.
    pub bin_dir: PathBuf,
}

impl Default for NetpolConnectOpts {
    fn default() -> Self {
        NetpolConnectOpts {
            connections: 2000,
            rounds: 15,
            policies: 1000,
            warmup: 200,
            nodes: 2,
            backend: "vxlan".into(),
            bin_dir: own_dir(),
        }
    }
}

/// One measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Phase {
    /// Connections attempted.
    pub connections: usize,
    /// Connections that did not complete the echo.
    pub failures: usize,
    /// Wall time of the loop.
    pub seconds: f64,
    /// Completed connections per second.
    pub per_s: f64,
}

impl Phase {
    fn of(connections: usize, failures: usize, elapsed: Duration) -> Phase {
        let seconds = elapsed.as_secs_f64();
        Phase {
            connections,
            failures,
            seconds: round3(seconds),
            per_s: round3((connections - failures) as f64 / seconds.max(1e-9)),
        }
    }
}

/// Runs the benchmark and returns its report as JSON.
///
/// Needs root. Call it from the main thread before it starts other threads
/// (see [`Supervisor`]).
pub fn run(opts: &NetpolConnectOpts) -> Result<Value> {
    if opts.connections == 0 || opts.nodes == 0 || opts.rounds == 0 {
        bail!("--connections, --rounds and --nodes must be positive");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the netpol-connect benchmark builds a lab in network namespaces: run it as root");
    }
    let supervisor = Supervisor::start()?;
    let sup = supervisor.handle();
    let run_dir = RunDir::acquire("netpol-connect")?;
    let uo = up_opts(
        opts.nodes,
        &opts.backend,
        vec![4],
        ModelKind::Netpol,
        &opts.bin_dir,
    );
    let (lab, _) = BenchLab::up(run_dir.lab_dir("lab"), &uo)?;
    lab_report::sync(&lab.layout, AGENT_TIMEOUT).context("wait for the agents")?;
    let (client, server) = pair(&lab.state.pods)?;
    let target = Target {
        netns: None,
        address: server
            .address(4)
            .context("the server pod has no IPv4 address")?,
        port: PORT,
        protocol: Protocol::Tcp,
    };

    let store = Store::open(&lab.layout)?;
    let docs = policies(opts.policies);
    let text = serde_json::to_string(&docs)?;
    let nodes: Vec<String> = lab
        .state
        .nodes
        .iter()
        .map(|n| lab.layout.node_netns(&n.name))
        .collect();
    let mut without = vec![phase(&client.netns, &target, opts)?];
    let mut with = Vec::with_capacity(opts.rounds);
    let mut enforced = true;
    for _ in 0..opts.rounds {
        store.apply(docs.clone(), "unrelated policies")?;
        lab_report::sync(&lab.layout, AGENT_TIMEOUT)
            .context("wait for the agents to apply the policies")?;
        for n in &nodes {
            enforced &= policy_table(n)?;
        }
        with.push(phase(&client.netns, &target, opts)?);
        store.delete_text(&text, "unrelated policies")?;
        lab_report::sync(&lab.layout, AGENT_TIMEOUT)
            .context("wait for the agents to remove the policies")?;
        without.push(phase(&client.netns, &target, opts)?);
        if sup.interrupted() {
            bail!("netpol-connect benchmark interrupted");
        }
    }
    let same_node = client.node == server.node;
    let (client, server) = (client.key(), server.key());
    lab.down()?;
    Ok(report(
        opts,
        Pair {
            client,
            server,
            same_node,
        },
        enforced,
        &without,
        &with,
    ))
}

/// The 1-, 5- and 15-minute load averages when the report is made: a
/// loaded machine explains a noisy run.
fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Client `x/a` and a server in `x` on another node when there is one.
fn pair(pods: &[PodRecord]) -> Result<(PodRecord, PodRecord)> {
    let client = pods
        .iter()
        .find(|p| p.key() == "x/a")
        .context("the netpol model's pod x/a is in the lab")?;
    let server = pods
        .iter()
        .filter(|p| p.namespace == "x" && p.name != client.name)
        .max_by_key(|p| p.node != client.node)
        .context("a second pod in namespace x")?;
    Ok((client.clone(), server.clone()))
}

/// Warm-up, then `opts.connections` sequential connect + echo round trips
/// from inside `netns`.
fn phase(netns: &str, target: &Target, opts: &NetpolConnectOpts) -> Result<Phase> {
    let what = format!("connect loop in {netns}");
    let probe_opts = ProbeOpts {
        timeout: CONNECT_TIMEOUT,
    };
    let (failures, elapsed) = netns::run_in(netns, &what, || {
        let failed = (0..opts.warmup)
            .filter(|_| !probe(target, &probe_opts).connected)
            .count();
        if failed == opts.warmup && failed > 0 {
            return Ok((usize::MAX, Duration::ZERO));
        }
        let started = Instant::now();
        let failures = (0..opts.connections)
            .filter(|_| !probe(target, &probe_opts).connected)
            .count();
        Ok((failures, started.elapsed()))
    })?;
    if failures == usize::MAX {
        bail!(
            "{what}: no warm-up connection to {}:{} completed",
            target.address,
            target.port
        );
    }
    Ok(Phase::of(opts.connections, failures, elapsed))
}

/// Whether `inet weft-policy` exists in `netns` (the agent enforces).
fn policy_table(netns: &str) -> Result<bool> {
    let mut cmd = Command::new("nft");
    cmd.args(["list", "tables", "inet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = netns::spawn_in(netns, &mut cmd)?;
    let out = child
        .wait_with_output()
        .with_context(|| format!("nft list tables in {netns}"))?;
    if !out.status.success() {
        bail!(
            "nft list tables in {netns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == format!("table {}", weft_policy::nft::TABLE)))
}

/// `count` policies that leave the pods of namespace `x` alone: in `y` and
/// `z` they select the model's pods (`pod: a|b|c`) with allow lists from
/// other namespaces and pods; in `x` they select a label no pod has.
pub fn policies(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            const PODS: [&str; 3] = ["a", "b", "c"];
            let selected = PODS[(i / 3) % 3];
            let peer_pod = PODS[(i / 9) % 3];
            let peer_ns = ["y", "z"][i % 2];
            let (namespace, selector) = match i % 3 {
                0 => ("x", json!({"matchLabels": {"bench": format!("other-{i}")}})),
                1 => ("y", json!({"matchLabels": {"pod": selected}})),
                _ => (
                    "z",
                    json!({"matchExpressions": [
                        {"key": "pod", "operator": "In", "values": [selected]}
                    ]}),
                ),
            };
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": format!("bench-unrelated-{i}"), "namespace": namespace},
                "spec": {
                    "podSelector": selector,
                    "ingress": [{
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"ns": peer_ns}},
                             "podSelector": {"matchLabels": {"pod": peer_pod}}},
                            {"ipBlock": {"cidr": format!("192.168.{}.0/24", i % 256)}}
                        ],
                        "ports": [{"port": 81 + (i % 50) as u16, "protocol": "TCP"}]
                    }]
                }
            })
        })
        .collect()
}

/// Largest ratio between the two policy-free phases around a loaded one
/// for the round to count: beyond it, the machine's load changed within
/// the round and the ratio would measure that.
pub const STABLE_BRACKET: f64 = 1.25;

/// One phase with policies against the policy-free phases around it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Round {
    /// Rate with the policies over the mean of the two rates around it.
    pub ratio: Option<f64>,
    /// The two rates around it agree within [`STABLE_BRACKET`].
    pub stable: bool,
}

impl Round {
    fn of(with: &Phase, before: &Phase, after: &Phase) -> Round {
        let (lo, hi) = (before.per_s.min(after.per_s), before.per_s.max(after.per_s));
        Round {
            ratio: ratio(with.per_s, (before.per_s + after.per_s) / 2.0).map(round3),
            stable: lo > 0.0 && hi / lo <= STABLE_BRACKET,
        }
    }
}

/// The two pods measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// `ns/name` of the client.
    pub client: String,
    /// `ns/name` of the server.
    pub server: String,
    /// Both on one node.
    pub same_node: bool,
}

/// The report: every phase, the median rate without and with the
/// policies, the ratio per round and the median of the stable rounds, and
/// the target — judged only when the agents
/// enforced policy and no connection failed.
pub fn report(
    opts: &NetpolConnectOpts,
    pair: Pair,
    enforced: bool,
    without: &[Phase],
    with: &[Phase],
) -> Value {
    let rates = |phases: &[Phase]| Spread::of(&phases.iter().map(|p| p.per_s).collect::<Vec<_>>());
    let (base, loaded) = (rates(without), rates(with));
    // Each phase with policies against the mean of the two policy-free
    // phases around it: load from outside the benchmark (the machine may be
    // shared) that changes slowly against a phase of half a second cancels
    // out. A round whose two baselines disagree by more than
    // STABLE_BRACKET saw the load change abruptly; it is reported but not
    // judged.
    let rounds: Vec<Round> = with
        .iter()
        .zip(without.windows(2))
        .map(|(w, around)| Round::of(w, &around[0], &around[1]))
        .collect();
    let stable: Vec<f64> = rounds
        .iter()
        .filter(|r| r.stable)
        .filter_map(|r| r.ratio)
        .collect();
    let r = Spread::of(&stable).map(|s| s.median);
    let failures: usize = without.iter().chain(with).map(|p| p.failures).sum();
    let met = r
        .filter(|_| enforced && failures == 0)
        .map(|r| r >= RATIO_MIN);
    json!({
        "benchmark": "netpol-connect",
        "machine": crate::machine::machine(),
        "nodes": opts.nodes,
        "backend": opts.backend,
        "client": pair.client,
        "server": pair.server,
        "same_node": pair.same_node,
        "port": PORT,
        "connections": opts.connections,
        "warmup": opts.warmup,
        "rounds": opts.rounds,
        "policies": opts.policies,
        "enforced": enforced,
        "statistic": "median (nearest rank) of the phases' rates, with min and max",
        "without_policies_per_s": base,
        "with_policies_per_s": loaded,
        "failures": failures,
        "phases": { "without": without, "with": with },
        "rounds_detail": rounds,
        "stable_rounds": stable.len(),
        "ratio": r,
        "ratio_statistic": "median over stable rounds of (rate with policies / mean rate of the policy-free phases before and after it); a round is stable when those two rates are within 25% of each other",
        "loadavg": loadavg(),
        "targets": { "ratio_min": RATIO_MIN },
        "met": { "ratio": met },
        "note": if enforced {
            "table inet weft-policy present on every node in every phase with the policies"
        } else {
            "NOT ENFORCED: no inet weft-policy table on some node; the ratio says nothing about policy"
        },
    })
}

#[cfg(test)]
#[path = "netpol_connect_tests.rs"]
mod tests;
