//! Loss of the API server changes nothing in the kernel; weftd reconnects
//! and reconciles.
//!
//! A `--datastore kube` lab of two dual-stack nodes on two underlay
//! segments (node2 reaches the API through the router), vxlan, agents on,
//! the demo model's pods on both nodes. Under a continuous 20 ms ping
//! (IPv4 and IPv6) from a pod on node1 to a pod on node2, with every
//! node's routes, FDB, permanent neighbours and `nft list ruleset`
//! captured before:
//!
//! - `apiserver_killed`: kube-apiserver is killed with SIGKILL and stays
//!   down [`KILL_DOWN`], longer than weftd's default 10 s resync, so every
//!   agent runs a pass on its cached stores meanwhile. Near the end of the
//!   outage every node's kernel state is byte-identical to before and the
//!   agents are still ready on the digest they had; after the restart
//!   (`control_plane::restart`, the code behind `lab control-plane
//!   restart`) and `lab sync` it is still identical, no agent logged a
//!   change, and no ping was lost.
//! - `network_blip`: the control plane's underlay link loses its carrier
//!   for [`BLIP`] (its bridge port in segment 0's namespace goes down and
//!   up); the same checks.
//! - `etcd_and_controller_manager`: etcd restarted with SIGTERM (the API
//!   answers again on it) and kube-controller-manager through the real
//!   `weftctl lab control-plane restart` command; the same checks.
//!
//! After each, a pod is deleted on one node and one added on the other
//! through the API (node1 → node2, the last time the other way round), `lab sync` waits until every agent applied the cluster's
//! digest, and the full mesh connects: the agents reconnected and
//! reconcile. Finally `lab down` stops the restarted processes it
//! recorded.
//!
//! Lab tier: needs root, the reference plugins, a built weftd (`cargo
//! build --bins`) and the control plane's binaries in `$WEFT_KUBE_BIN`
//! (`tests/kube/build.sh`); skips loudly without them, fails instead
//! where `WEFT_REQUIRE_PRIVILEGED` is set (CI).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Lab, bin_dir, step};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use weft_lab::cluster::{self, Datastore};
use weft_lab::control_plane::{self, Component};
use weft_lab::kubelet;
use weft_lab::layout::NodePaths;
use weft_lab::model::ModelKind;
use weft_lab::probe::{self, ProbeQuery};
use weft_lab::state::{LabLock, PodRecord, ProcRecord};
use weft_lab::store::Store;
use weft_lab::{LabState, Layout, agents, netns, procs, report};
use weft_model::Protocol;
use weft_testkit::TempDir;

/// How long the killed API server stays away: longer than weftd's default
/// resync (10 s), so every agent runs at least one pass without it.
const KILL_DOWN: Duration = Duration::from_secs(12);

/// How long the control plane's link stays without carrier.
const BLIP: Duration = Duration::from_secs(5);

/// How long before the end of the outage the kernel is compared.
const CHECK_BEFORE_END: Duration = Duration::from_millis(1500);

/// How long `lab sync` may take after the API is back (the watchers'
/// backoff, then a pass).
const SYNC: Duration = Duration::from_secs(60);

/// What an agent logs when it changes something; none may appear while
/// the API is away or when it comes back.
const CHANGES: [&str; 3] = [
    "applied changes",
    "published node annotations",
    "wrote node state",
];

fn main() {
    common::dispatch_argv0();
    let test = "lab_api_loss";
    let Some(weftd) = common::preflight_weftd(test) else {
        return;
    };
    if let Err(why) = common::kube_bin() {
        common::skip(test, &why);
        return;
    }
    let bin = bin_dir(&[], &[("weftd", &weftd)]);
    let begun = Instant::now();
    let lab = Lab::new("lab-api-loss");
    let layout = &lab.layout;
    let mut opts = common::on(common::opts(bin.path(), true), Datastore::Kube);
    opts.segments = 2;
    opts.model = ModelKind::Demo;
    opts.agent_timeout = Duration::from_secs(30);
    let state = cluster::up(layout, &opts).unwrap_or_else(|e| panic!("lab up: {e}"));
    println!("lab up --datastore kube: {:.1?}", begun.elapsed());
    assert_ne!(
        state.node("node1").unwrap().segment,
        state.node("node2").unwrap().segment
    );
    sync(layout);

    step("api_loss/apiserver_killed", || {
        outage(layout, "kill -9 kube-apiserver", KILL_DOWN, || {
            control_plane::restart(layout, Component::ApiServer, true, KILL_DOWN).unwrap()
        });
        pods_change(layout, "k1", "node1", "node2");
    });
    step("api_loss/network_blip", || {
        outage(layout, "control plane link blip", BLIP, || {
            link_blip(layout, BLIP)
        });
        pods_change(layout, "b1", "node1", "node2");
    });
    step("api_loss/etcd_and_controller_manager", || {
        outage(layout, "etcd restart", Duration::ZERO, || {
            control_plane::restart(layout, Component::Etcd, false, Duration::from_secs(2)).unwrap()
        });
        outage(
            layout,
            "weftctl lab control-plane restart",
            Duration::ZERO,
            || weftctl_restart(bin.path(), layout),
        );
        // node1 is down to its last pod: the other way round.
        pods_change(layout, "e1", "node2", "node1");
    });
    step("api_loss/down_stops_the_restarted", || {
        down_stops_the_restarted(layout)
    });
    println!("{test}: all passed in {:.1?}", begun.elapsed());
}

/// Runs `disrupt` (which returns once the control plane serves again)
/// under pings from node1 to node2; when `down` is long enough, compares
/// the kernel while the API is still away. Then `lab sync` and the same
/// comparison; no agent may have logged a change and no ping may be lost.
fn outage<T: std::fmt::Debug + Send>(
    layout: &Layout,
    what: &str,
    down: Duration,
    disrupt: impl FnOnce() -> T + Send,
) {
    let state = LabState::require(layout).unwrap();
    let before = kernel(&state);
    let statuses = statuses(layout, &state);
    let logs = log_offsets(layout, &state);
    let pings = Pings::start(&state);
    std::thread::sleep(Duration::from_millis(1000));
    let begun = Instant::now();
    let outcome = std::thread::scope(|s| {
        let disruption = s.spawn(disrupt);
        if down > CHECK_BEFORE_END {
            std::thread::sleep(down - CHECK_BEFORE_END);
            assert!(!disruption.is_finished(), "{what}: over too early");
            same_kernel(layout, &before, &format!("{what}, API still away"));
            // Every agent ran a pass meanwhile (its status file is written
            // after each), on the stores it had: still ready, same digest.
            if down >= KILL_DOWN {
                for (node, old) in &statuses {
                    let new = status(layout, node);
                    assert!(new["time"] != old["time"], "{node}: no pass: {new}");
                    assert_eq!(new["ready"], true, "{node}: {new}");
                    assert_eq!(new["digest"], old["digest"], "{node}: {new}");
                }
            }
        }
        disruption.join().expect("the disruption panicked")
    });
    println!("{what}: {outcome:?} after {:.1?}", begun.elapsed());
    sync(layout);
    same_kernel(layout, &before, &format!("{what}, after lab sync"));
    pings.finish(layout, what);
    for (node, offset) in logs {
        let log = NodePaths::new(layout.node_dir(&node)).weftd_log;
        let text = std::fs::read(&log).unwrap();
        let since = String::from_utf8_lossy(&text[offset as usize..]);
        for change in CHANGES {
            assert!(
                !since.contains(change),
                "{what}: node {node}'s agent reported {change:?}:\n{since}"
            );
        }
    }
}

/// Every node's kernel state that weft programs, as the tools print it:
/// routes of every table, FDB, permanent neighbours, nftables.
fn kernel(state: &LabState) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in &state.nodes {
        let ns = n.netns.as_str();
        let ip = |args: &[&str]| netns::ip_in(ns, args).unwrap();
        out.insert(
            format!("{} ip -4 route", n.name),
            ip(&["-4", "route", "show", "table", "all"]),
        );
        out.insert(
            format!("{} ip -6 route", n.name),
            ip(&["-6", "route", "show", "table", "all"]),
        );
        out.insert(
            format!("{} neigh", n.name),
            ip(&["neigh", "show", "nud", "permanent"]),
        );
        out.insert(
            format!("{} fdb", n.name),
            output(ns, "bridge", &["fdb", "show"]),
        );
        out.insert(
            format!("{} nft", n.name),
            output(ns, "nft", &["list", "ruleset"]),
        );
    }
    out
}

/// `program args` run inside `ns`: its stdout, which must be non-empty.
fn output(ns: &str, program: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = netns::spawn_in(ns, &mut cmd)
        .unwrap()
        .wait_with_output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !text.trim().is_empty(),
        "{program} {args:?} in {ns}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Fails naming every part of the kernel state that differs from `before`.
fn same_kernel(layout: &Layout, before: &BTreeMap<String, String>, when: &str) {
    let now = kernel(&LabState::require(layout).unwrap());
    let differ: Vec<String> = before
        .iter()
        .filter(|(k, v)| now.get(*k) != Some(*v))
        .map(|(k, v)| format!("--- {k} before:\n{v}--- now:\n{}", now[k]))
        .collect();
    assert!(
        differ.is_empty(),
        "{when}: the kernel changed:\n{}",
        differ.join("\n")
    );
}

/// Every node's status file (what weftd writes after each pass).
fn statuses(layout: &Layout, state: &LabState) -> Vec<(String, serde_json::Value)> {
    state
        .nodes
        .iter()
        .map(|n| (n.name.clone(), status(layout, &n.name)))
        .collect()
}

fn status(layout: &Layout, node: &str) -> serde_json::Value {
    let path = layout.node_dir(node).join(agents::STATUS_FILE);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Where each node's agent log ends now.
fn log_offsets(layout: &Layout, state: &LabState) -> Vec<(String, u64)> {
    state
        .nodes
        .iter()
        .map(|n| {
            let log = NodePaths::new(layout.node_dir(&n.name)).weftd_log;
            (n.name.clone(), std::fs::metadata(log).unwrap().len())
        })
        .collect()
}

/// Continuous pings (IPv4 and IPv6, every 20 ms) from a pod on node1 to
/// a pod on node2, their output in files.
struct Pings {
    dir: TempDir,
    begun: Instant,
    children: Vec<(String, Child)>,
}

impl Pings {
    fn start(state: &LabState) -> Pings {
        let on = |node: &str| -> &PodRecord { state.pods.iter().find(|p| p.node == node).unwrap() };
        let (from, to) = (on("node1"), on("node2"));
        let dir = TempDir::new("pings").unwrap();
        let children = [4u8, 6]
            .iter()
            .map(|&family| {
                let addr = to.address(family).unwrap().to_string();
                let out = File::create(dir.path().join(format!("ping{family}"))).unwrap();
                let mut cmd = Command::new("ping");
                cmd.args([&format!("-{family}"), "-n", "-i", "0.02", "-W", "1", &addr])
                    .stdout(out)
                    .stderr(Stdio::piped());
                let what = format!("{} -> {} ({addr})", from.key(), to.key());
                (what, netns::spawn_in(&from.netns, &mut cmd).unwrap())
            })
            .collect();
        Pings {
            dir,
            begun: Instant::now(),
            children,
        }
    }

    /// Stops the pings (SIGINT: they print their summary) and fails when
    /// any echo went unanswered, or when far fewer were sent than 20 ms
    /// apart would make (a ping that stalled proves nothing). The last one
    /// may be in flight when the signal lands; it does not count.
    fn finish(self, layout: &Layout, what: &str) {
        let least = self.begun.elapsed().as_millis() as u64 / 40;
        for (family, (path, mut child)) in [4u8, 6].iter().zip(self.children) {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
            let status = child.wait().unwrap();
            let file = self.dir.path().join(format!("ping{family}"));
            let text = std::fs::read_to_string(&file).unwrap();
            let (sent, lost) = unanswered(&text)
                .unwrap_or_else(|| panic!("ping {path} ({status}): no summary:\n{text}"));
            assert!(sent >= least, "ping {path}: only {sent} sent:\n{text}");
            if !lost.is_empty() {
                panic!(
                    "{what}: ping {path} lost {} of {sent} (icmp_seq {lost:?})\n{}",
                    lost.len(),
                    diagnose(layout)
                );
            }
            println!("{what}: ping {path}: {sent} sent, none lost");
        }
    }
}

/// From ping's output: how many it sent, and which of them (but the last)
/// got no reply.
fn unanswered(text: &str) -> Option<(u64, Vec<u64>)> {
    let sent: u64 = text
        .lines()
        .find(|l| l.contains("packets transmitted"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let replied: BTreeSet<u64> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            l.split("icmp_seq=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    Some((sent, (1..sent).filter(|s| !replied.contains(s)).collect()))
}

/// Takes the control plane's underlay link away for `down`: its bridge
/// port in segment 0's namespace goes down, so the control plane's
/// `eth0` loses carrier (as when a cable or switch port fails) and keeps
/// its addresses and routes; then the port comes back. Waits until the
/// API answers again.
fn link_blip(layout: &Layout, down: Duration) -> Duration {
    let state = LabState::require(layout).unwrap();
    let cp = control_plane::record(&state).unwrap().netns.clone();
    let segment = state.segments[0].netns.clone();
    let links = |ns: &str, dev: Option<&str>| -> serde_json::Value {
        let mut args = vec!["-j", "link", "show"];
        args.extend(dev);
        serde_json::from_str(&netns::ip_in(ns, &args).unwrap()).unwrap()
    };
    let peer = links(&cp, Some("eth0"))[0]["link_index"].clone();
    let all = links(&segment, None);
    let port = all
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifindex"] == peer)
        .and_then(|l| l["ifname"].as_str())
        .unwrap_or_else(|| panic!("no port {peer} in {segment}: {all}"))
        .to_string();
    netns::ip_in(&segment, &["link", "set", &port, "down"]).unwrap();
    std::thread::sleep(down);
    netns::ip_in(&segment, &["link", "set", &port, "up"]).unwrap();
    let back = Instant::now();
    loop {
        let args = ["--request-timeout=2s", "get", "--raw", "/readyz"];
        let out = control_plane::kubectl(layout, &state, &args, None).unwrap();
        if out.status.success() {
            return back.elapsed();
        }
        assert!(
            back.elapsed() < SYNC,
            "the API did not come back after the blip"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `weftctl lab control-plane restart controller-manager` (the test
/// binary is weftctl through a symlink): prints what it did, and the new
/// process is the recorded one.
fn weftctl_restart(bin: &Path, layout: &Layout) -> String {
    let old = recorded(layout, Component::ControllerManager);
    let out = Command::new(bin.join("weftctl"))
        .arg("lab")
        .arg("--state-dir")
        .arg(layout.root())
        .args([
            "control-plane",
            "restart",
            "controller-manager",
            "--down-ms",
            "500",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "weftctl: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = recorded(layout, Component::ControllerManager);
    assert!(!procs::alive(&old) && procs::alive(&new), "{old:?} {new:?}");
    let expect = format!("pid {} stopped; pid {} started", old.pid, new.pid);
    assert!(said.contains(&expect), "{said}");
    said.trim().to_string()
}

fn recorded(layout: &Layout, component: Component) -> ProcRecord {
    let state = LabState::require(layout).unwrap();
    let cp = control_plane::record(&state).unwrap();
    match component {
        Component::Etcd => cp.etcd,
        Component::ApiServer => cp.apiserver,
        Component::ControllerManager => cp.controller_manager,
    }
    .unwrap()
}

/// Through the API: `del_on`'s first pod deleted, a new pod on `add_on`;
/// then every agent applies it and the full mesh connects.
fn pods_change(layout: &Layout, tag: &str, del_on: &str, add_on: &str) {
    {
        let _lock = LabLock::acquire(layout).unwrap();
        let mut state = LabState::require(layout).unwrap();
        let store = Store::open(layout).unwrap();
        let gone = state.pods.iter().find(|p| p.node == del_on).unwrap().key();
        kubelet::del_pod(layout, &mut state, &store, &gone).unwrap();
        assert!(
            state.pods.iter().any(|p| p.node == del_on),
            "{del_on} keeps a pod"
        );
        let spec = common::pod("demo", &format!("new-{tag}"), add_on);
        kubelet::add_pod(layout, &mut state, &store, &spec).unwrap();
    }
    sync(layout);
    full_mesh(layout);
}

/// Every pod reaches every pod on TCP/80 and UDP/80, IPv4 and IPv6.
fn full_mesh(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let query = ProbeQuery {
            from: Vec::new(),
            to: Vec::new(),
            port: 80,
            protocol,
            families: vec![4, 6],
            timeout: Duration::from_secs(2),
        };
        let records = probe::probe(&state, &query).unwrap();
        let n = state.pods.len();
        assert_eq!(records.len(), n * n * 2, "{protocol:?}");
        if records.iter().any(|r| !r.connected) {
            panic!(
                "{protocol:?} full mesh not connected:\n{}\n{}",
                probe::render(&records),
                diagnose(layout)
            );
        }
    }
}

fn sync(layout: &Layout) {
    if let Err(e) = report::sync(layout, SYNC) {
        panic!("lab sync: {e}\n{}", diagnose(layout));
    }
}

/// The agents' and the API server's log tails.
fn diagnose(layout: &Layout) -> String {
    let Ok(state) = LabState::require(layout) else {
        return "(no lab state)".into();
    };
    let mut logs: Vec<(String, PathBuf)> = state
        .nodes
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                NodePaths::new(layout.node_dir(&n.name)).weftd_log,
            )
        })
        .collect();
    logs.push((
        "kube-apiserver".into(),
        weft_lab::layout::ControlPlanePaths::new(layout).log("kube-apiserver"),
    ));
    logs.iter()
        .map(|(who, log)| format!("--- {who} log tail:\n{}\n", procs::tail_file(log, 15)))
        .collect()
}

/// `lab down` stops the processes the restarts recorded and leaves no
/// namespace.
fn down_stops_the_restarted(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    let cp: Vec<ProcRecord> = control_plane::record(&state).unwrap().processes().collect();
    assert_eq!(cp.len(), 3);
    assert!(cp.iter().all(procs::alive), "{cp:?}");
    cluster::down(layout).unwrap();
    assert!(cp.iter().all(|p| !procs::alive(p)), "{cp:?}");
    assert_eq!(common::own_netns(layout), Vec::<String>::new());
}
