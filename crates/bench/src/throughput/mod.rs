//! TCP throughput with iperf3: pod to pod on one node, across nodes with
//! `vxlan` and with `host-gw`, against node to node over the underlay (the
//! baseline), all measured in the same run on the same machine.
//!
//! Two labs of two nodes each, one per backend, in state directories of
//! their own under /run/weft/bench-throughput. The baseline and the
//! same-node case run in the vxlan lab (neither crosses a tunnel), the
//! host-gw case in the other. Servers and clients are iperf3 processes
//! started inside the lab's namespaces and bound to lab addresses; the
//! servers are killed by PID afterwards, the labs removed, also on failure
//! and on SIGINT/SIGTERM/SIGHUP.

mod procs;

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use weft_lab::kubelet::{self, PodSpec};
use weft_lab::model::ModelKind;
use weft_lab::report;
use weft_lab::store::Store;

use crate::iperf::IperfRun;
use crate::labs::{BenchLab, RunDir, own_dir, up_opts};
use crate::stats::{Spread, ratio};
use crate::supervise::{Handle, Supervisor};
use procs::{ClientArgs, Server};

/// Target: host-gw pod-to-pod across nodes over node-to-node.
pub const HOST_GW_RATIO_MIN: f64 = 0.95;
/// Target: vxlan pod-to-pod across nodes over node-to-node.
pub const VXLAN_RATIO_MIN: f64 = 0.85;

/// Options for [`run`].
#[derive(Debug, Clone)]
pub struct ThroughputOpts {
    /// Measured seconds per run (`iperf3 -t`).
    pub seconds: u32,
    /// Seconds at the start of each run not counted (`iperf3 -O`).
    pub omit: u32,
    /// Parallel TCP streams (`iperf3 -P`).
    pub parallel: u32,
    /// Runs per case; each case reports the median.
    pub runs: usize,
    /// Also measure every case over IPv6 (extra figures; the targets are
    /// judged on IPv4).
    pub ipv6: bool,
    /// The directory with `weft`, `weftd` and `weftctl`.
    pub bin_dir: PathBuf,
}

impl Default for ThroughputOpts {
    fn default() -> Self {
        ThroughputOpts {
            seconds: 5,
            omit: 1,
            parallel: 1,
            runs: 3,
            ipv6: false,
            bin_dir: own_dir(),
        }
    }
}

/// What a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Underlay,
    SameNode,
    Vxlan,
    HostGw,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Underlay, Kind::SameNode, Kind::Vxlan, Kind::HostGw];

    fn name(self) -> &'static str {
        match self {
            Kind::Underlay => "underlay",
            Kind::SameNode => "same_node",
            Kind::Vxlan => "vxlan",
            Kind::HostGw => "host_gw",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Kind::Underlay => "baseline: node1 -> node2 over the underlay (no weft in the path)",
            Kind::SameNode => "pod -> pod on node1 (veth, host routing, veth)",
            Kind::Vxlan => "pod on node1 -> pod on node2, backend vxlan",
            Kind::HostGw => "pod on node1 -> pod on node2, backend host-gw",
        }
    }
}

/// One case, resolved to namespaces and addresses.
#[derive(Debug)]
struct Case {
    key: String,
    kind: Kind,
    family: u8,
    client_netns: String,
    from: IpAddr,
    server_netns: String,
    to: IpAddr,
    mtu: u64,
    runs: Vec<IperfRun>,
}

/// Runs the benchmark and returns its report as JSON.
///
/// Needs root and iperf3. Call it from the main thread before it starts
/// other threads (see [`Supervisor`]).
pub fn run(opts: &ThroughputOpts) -> Result<Value> {
    if opts.seconds == 0 || opts.parallel == 0 || opts.runs == 0 {
        bail!("--seconds, --parallel and --runs must be positive");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the throughput benchmark builds labs in network namespaces: run it as root");
    }
    let tool = crate::iperf::version()
        .context("iperf3 not found (Debian: apt-get install iperf3, or scripts/install-deps)")?;

    // Declared first, dropped last: signals stay handled during cleanup.
    let supervisor = Supervisor::start()?;
    let sup = supervisor.handle();
    let run_dir = RunDir::acquire("throughput")?;
    let families: Vec<u8> = if opts.ipv6 { vec![4, 6] } else { vec![4] };

    let mut labs = Vec::new();
    for backend in ["vxlan", "host-gw"] {
        check(&sup)?;
        let uo = up_opts(2, backend, families.clone(), ModelKind::None, &opts.bin_dir);
        let (mut lab, _) = BenchLab::up(run_dir.lab_dir(backend), &uo)?;
        add_pods(&mut lab, backend == "vxlan")?;
        labs.push(lab);
    }
    for lab in &labs {
        check(&sup)?;
        report::sync(&lab.layout, crate::labs::AGENT_TIMEOUT)
            .with_context(|| format!("wait for the agents of {}", lab.layout.root().display()))?;
    }
    let (vx, hg) = (&labs[0], &labs[1]);

    let mut cases = Vec::new();
    for &family in &families {
        for kind in Kind::ALL {
            cases.push(resolve(
                kind,
                family,
                if kind == Kind::HostGw { hg } else { vx },
            )?);
        }
    }
    let mut servers = Vec::new();
    for case in &cases {
        check(&sup)?;
        let log = run_dir
            .path()
            .join(format!("iperf3-server-{}.log", case.key));
        servers.push(Server::start(&case.server_netns, case.to, &log)?);
    }

    let client = |case: &Case, seconds: u32, omit: u32| {
        procs::client(
            &ClientArgs {
                netns: &case.client_netns,
                from: case.from,
                to: case.to,
                seconds,
                omit,
                parallel: opts.parallel,
            },
            &sup,
        )
        .with_context(|| format!("case {}", case.key))
    };
    // One untimed second per case: proves the path end to end (routes,
    // neighbours, FDB) before anything is counted.
    for case in &cases {
        check(&sup)?;
        client(case, 1, 0)?;
    }
    // Rounds, each case once per round, the order rotated every round so
    // that drift on the machine does not favour one case.
    let n = cases.len();
    for round in 0..opts.runs {
        for i in 0..n {
            check(&sup)?;
            let k = (i + round) % n;
            let r = client(&cases[k], opts.seconds, opts.omit)?;
            cases[k].runs.push(r);
        }
    }

    drop(servers);
    for lab in labs {
        lab.down()?;
    }
    // The server logs are only of use when a run fails.
    for case in &cases {
        let _ = std::fs::remove_file(
            run_dir
                .path()
                .join(format!("iperf3-server-{}.log", case.key)),
        );
    }
    Ok(report(opts, &tool, &cases))
}

fn check(sup: &Handle) -> Result<()> {
    if sup.interrupted() {
        bail!("throughput benchmark interrupted");
    }
    Ok(())
}

/// Pods `bench/a` on node1 and `bench/c` on node2, plus `bench/b` on node1
/// for the same-node case. No ports: iperf3 is their only server.
fn add_pods(lab: &mut BenchLab, same_node: bool) -> Result<()> {
    let store = Store::open(&lab.layout)?;
    let mut pods = vec![("a", "node1"), ("c", "node2")];
    if same_node {
        pods.push(("b", "node1"));
    }
    for (name, node) in pods {
        let spec = PodSpec {
            namespace: "bench".into(),
            name: name.into(),
            node: Some(node.into()),
            labels: [("app".to_string(), "iperf3".to_string())].into(),
            ports: Vec::new(),
        };
        kubelet::add_pod(&lab.layout, &mut lab.state, &store, &spec)
            .with_context(|| format!("start pod bench/{name} on {node}"))?;
    }
    Ok(())
}

fn resolve(kind: Kind, family: u8, lab: &BenchLab) -> Result<Case> {
    let st = &lab.state;
    let node_addr = |name: &str| -> Result<(String, IpAddr)> {
        let n = st.node(name)?;
        let a = n
            .addresses
            .iter()
            .map(|a| a.addr())
            .find(|a| weft_lab::state::family_of(*a) == family)
            .with_context(|| format!("{name} has no IPv{family} underlay address"))?;
        Ok((n.netns.clone(), a))
    };
    let pod_addr = |key: &str| -> Result<(String, IpAddr)> {
        let p = st.pod(key)?;
        let a = p
            .address(family)
            .with_context(|| format!("pod {key} has no IPv{family} address"))?;
        Ok((p.netns.clone(), a))
    };
    let ((client_netns, from), (server_netns, to)) = match kind {
        Kind::Underlay => (node_addr("node1")?, node_addr("node2")?),
        Kind::SameNode => (pod_addr("bench/a")?, pod_addr("bench/b")?),
        Kind::Vxlan | Kind::HostGw => (pod_addr("bench/a")?, pod_addr("bench/c")?),
    };
    let mtu = procs::mtu(&client_netns, "eth0")?;
    let key = match family {
        4 => kind.name().to_string(),
        _ => format!("{}_v6", kind.name()),
    };
    Ok(Case {
        key,
        kind,
        family,
        client_netns,
        from,
        server_netns,
        to,
        mtu,
        runs: Vec::new(),
    })
}

/// Median receiver throughput of a case, in Gbit/s.
fn median_rx(cases: &[Case], kind: Kind, family: u8) -> Option<f64> {
    let c = cases
        .iter()
        .find(|c| c.kind == kind && c.family == family)?;
    let rx: Vec<f64> = c.runs.iter().map(|r| r.receiver_gbps).collect();
    Spread::of(&rx).map(|s| s.median)
}

/// Ratios of the backends' median received throughput to the underlay's,
/// and whether they meet the targets.
fn verdict(underlay: Option<f64>, vxlan: Option<f64>, host_gw: Option<f64>) -> (Value, Value) {
    let r = |x: Option<f64>| underlay.and_then(|u| ratio(x?, u));
    let (vx, hg) = (r(vxlan), r(host_gw));
    let vx_ok = vx.is_some_and(|v| v >= VXLAN_RATIO_MIN);
    let hg_ok = hg.is_some_and(|v| v >= HOST_GW_RATIO_MIN);
    (
        json!({ "host_gw_over_underlay": hg, "vxlan_over_underlay": vx }),
        json!({ "host_gw": hg_ok, "vxlan": vx_ok, "all": hg_ok && vx_ok }),
    )
}

fn case_json(c: &Case) -> Value {
    let col = |f: fn(&IperfRun) -> f64| Spread::of(&c.runs.iter().map(f).collect::<Vec<_>>());
    json!({
        "description": c.kind.description(),
        "family": c.family,
        "client": { "netns": c.client_netns, "address": c.from },
        "server": { "netns": c.server_netns, "address": c.to },
        "client_mtu": c.mtu,
        "sender_gbps": col(|r| r.sender_gbps),
        "receiver_gbps": col(|r| r.receiver_gbps),
        "retransmits": c.runs.iter().map(|r| r.retransmits).collect::<Vec<_>>(),
        "client_cpu_percent": c.runs.iter().map(|r| r.client_cpu_percent.map(crate::stats::round3)).collect::<Vec<_>>(),
        "server_cpu_percent": c.runs.iter().map(|r| r.server_cpu_percent.map(crate::stats::round3)).collect::<Vec<_>>(),
    })
}

fn report(opts: &ThroughputOpts, tool: &str, cases: &[Case]) -> Value {
    let nproc = crate::machine::nproc();
    let mut by_case = Map::new();
    for c in cases {
        by_case.insert(c.key.clone(), case_json(c));
    }
    let fam = |f: u8| {
        verdict(
            median_rx(cases, Kind::Underlay, f),
            median_rx(cases, Kind::Vxlan, f),
            median_rx(cases, Kind::HostGw, f),
        )
    };
    let (ratio_v4, met_v4) = fam(4);
    let ratio_v6 = opts.ipv6.then(|| fam(6).0);
    json!({
        "benchmark": "throughput",
        "tool": tool,
        "protocol": "TCP",
        "seconds": opts.seconds,
        "omit_seconds": opts.omit,
        "parallel": opts.parallel,
        "runs": opts.runs,
        "statistic": "median of the runs (nearest rank); ratios and targets use the receiver's median, IPv4",
        "order": "one untimed 1 s run per case, then rounds of every case with the order rotated each round",
        "machine": crate::machine::machine(),
        "cpu_note": format!(
            "client and server run on the same machine and share its {nproc} CPU(s); \
             the figures are bounded by CPU, not by a link, and the ratios compare \
             the per-byte cost of each path"
        ),
        "cases": by_case,
        "ratio": ratio_v4,
        "ratio_v6": ratio_v6,
        "targets": {
            "host_gw_over_underlay_min": HOST_GW_RATIO_MIN,
            "vxlan_over_underlay_min": VXLAN_RATIO_MIN,
        },
        "met": met_v4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_compares_with_the_targets() {
        let (r, m) = verdict(Some(20.0), Some(17.0), Some(19.0));
        assert_eq!(r["vxlan_over_underlay"], 0.85);
        assert_eq!(r["host_gw_over_underlay"], 0.95);
        assert_eq!(m, json!({"host_gw": true, "vxlan": true, "all": true}));

        let (r, m) = verdict(Some(20.0), Some(10.0), Some(18.9));
        assert_eq!(r["vxlan_over_underlay"], 0.5);
        assert_eq!(m, json!({"host_gw": false, "vxlan": false, "all": false}));

        // No baseline: no ratio, and a target without a figure is not met.
        let (r, m) = verdict(None, Some(1.0), Some(1.0));
        assert!(r["vxlan_over_underlay"].is_null());
        assert_eq!(m["all"], false);
    }

    #[test]
    fn the_median_is_of_the_received_rate() {
        let run = |rx: f64| IperfRun {
            sender_gbps: rx + 1.0,
            receiver_gbps: rx,
            retransmits: Some(0),
            seconds: 5.0,
            streams: Some(1),
            client_cpu_percent: None,
            server_cpu_percent: None,
        };
        let case = Case {
            key: "vxlan".into(),
            kind: Kind::Vxlan,
            family: 4,
            client_netns: "weftlabx-node1-bench-a".into(),
            from: "10.244.1.2".parse().unwrap(),
            server_netns: "weftlabx-node2-bench-c".into(),
            to: "10.244.2.2".parse().unwrap(),
            mtu: 1450,
            runs: vec![run(3.0), run(1.0), run(2.0)],
        };
        let cases = [case];
        assert_eq!(median_rx(&cases, Kind::Vxlan, 4), Some(2.0));
        assert_eq!(median_rx(&cases, Kind::Vxlan, 6), None);
        let j = case_json(&cases[0]);
        assert_eq!(j["receiver_gbps"]["median"], 2.0);
        assert_eq!(j["sender_gbps"]["max"], 4.0);
        assert_eq!(j["client_mtu"], 1450);
    }
}
