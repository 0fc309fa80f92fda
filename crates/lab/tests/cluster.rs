//! The agent and the lab end to end: three dual-stack nodes running the
//! real weftd, nine pods attached through the real plugin chain.
//!
//! For each backend (`vxlan`, `host-gw`, and `auto` over two underlay
//! segments joined by a router): the full mesh connects over TCP and UDP,
//! IPv4 and IPv6, and a node's routes leave through the device the backend
//! calls for. On vxlan and host-gw: an agent killed with SIGKILL and
//! restarted under continuous traffic loses no packet and finds nothing to
//! change. On vxlan: a node deleted from the datastore disappears from the
//! other nodes' routes, FDB and neighbours and comes back when re-applied,
//! a node that changes its underlay address is followed, and a deleted
//! pod's address is released. Every lab's `down` leaves no
//! namespace, process or file.
//!
//! On `--datastore kube` (a real control plane, `$WEFT_KUBE_BIN`) one
//! vxlan lab runs the cases that exercise the kube source: the full mesh
//! (pod IPs from Pod status, pod CIDRs from kube-controller-manager),
//! routes (VTEPs from the node annotations the agents publish), a node
//! leaving and rejoining, a node changing its addresses (Node status), pod
//! delete and add, and `down`.
//!
//! Kernel tier: needs root, the reference plugins and a built weftd
//! (`cargo build --bins`); skips loudly otherwise, fails instead where
//! `WEFT_REQUIRE_PRIVILEGED` is set (CI). Failures print the probe matrix,
//! the nodes' routes and the agents' log tails.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Lab, bin_dir, ipam_held, named, step};
use ipnet::IpNet;
use weft_lab::agents;
use weft_lab::cluster::{self, Datastore};
use weft_lab::kubelet;
use weft_lab::layout::NodePaths;
use weft_lab::probe::{self, ProbeQuery};
use weft_lab::report;
use weft_lab::state::LabLock;
use weft_lab::store::Store;
use weft_lab::{LabState, Layout, netns, procs};
use weft_model::Protocol;

/// The agents' VXLAN device (weftd's default).
const VXLAN_DEV: &str = "weft.vxlan";

/// weft's route protocol number (`proto 87` in `ip route`).
const ROUTE_PROTO: &str = "87";

/// How long `lab sync` may take after a change.
const SYNC: Duration = Duration::from_secs(20);

fn main() {
    common::dispatch_argv0();
    let Some(weftd) = common::preflight_weftd("lab_cluster") else {
        return;
    };
    let bin = bin_dir(&[], &[("weftd", &weftd)]);
    let begun = Instant::now();
    for ds in common::datastores("lab_cluster") {
        vxlan_cluster(bin.path(), ds);
        if ds == Datastore::File {
            host_gw_cluster(bin.path());
            auto_over_two_segments(bin.path());
        }
    }
    println!("lab_cluster: all passed in {:.1?}", begun.elapsed());
}

fn vxlan_cluster(bin: &Path, ds: Datastore) {
    let lab = up(bin, "vxlan", 1, ds);
    let layout = &lab.layout;
    let step = |name: &str, f: &dyn Fn()| step(&named(ds, name), f);
    step("vxlan/full_mesh", &|| full_mesh(layout));
    step("vxlan/fast_path_attached", &|| {
        fast_path_attached(layout, true)
    });
    step("vxlan/fast_path_skips_the_nodes_stacks", &|| {
        fast_path_skips_the_nodes_stacks(layout, true)
    });
    step("vxlan/routes", &|| {
        routes_use(layout, "node1", |_| Via::Vxlan)
    });
    step("vxlan/added_pod_talks_at_once", &|| {
        added_pod_talks_at_once(layout)
    });
    if ds == Datastore::File {
        step("vxlan/kill_agent_under_traffic", &|| {
            kill_under_traffic(layout)
        });
    }
    step("vxlan/node_leaves_and_joins", &|| {
        node_leaves_and_joins(layout)
    });
    step("vxlan/node_changes_address", &|| {
        node_changes_address(layout)
    });
    // After the node cases on purpose: node3's agent must still follow the
    // cluster once the address its API connections left from is gone.
    step("vxlan/pod_delete_releases_address", &|| {
        pod_delete_releases(layout)
    });
    step("vxlan/down_leaves_nothing", &|| down_leaves_nothing(layout));
}

fn host_gw_cluster(bin: &Path) {
    let lab = up(bin, "host-gw", 1, Datastore::File);
    let layout = &lab.layout;
    step("host-gw/full_mesh", || full_mesh(layout));
    step("host-gw/fast_path_attached", || {
        fast_path_attached(layout, false)
    });
    step("host-gw/fast_path_skips_the_nodes_stacks", || {
        fast_path_skips_the_nodes_stacks(layout, false)
    });
    step("host-gw/routes", || {
        routes_use(layout, "node1", |_| Via::Underlay)
    });
    step("host-gw/kill_agent_under_traffic", || {
        kill_under_traffic(layout)
    });
    step("host-gw/down_leaves_nothing", || {
        down_leaves_nothing(layout)
    });
}

fn auto_over_two_segments(bin: &Path) {
    let lab = up(bin, "auto", 2, Datastore::File);
    let layout = &lab.layout;
    step("auto/segments_in_status", || segments_in_status(layout));
    step("auto/full_mesh", || full_mesh(layout));
    let state = LabState::require(layout).unwrap();
    let home = state.node("node1").unwrap().segment;
    step("auto/routes", || {
        routes_use(layout, "node1", |peer| {
            if peer.segment == home {
                Via::Underlay
            } else {
                Via::Vxlan
            }
        })
    });
    step("auto/masquerade", || masquerade(layout));
    step("auto/down_leaves_nothing", || down_leaves_nothing(layout));
}

/// Pod traffic leaving the cluster's pod CIDRs is masqueraded to the node's
/// underlay address; pod-to-pod traffic keeps the pod's own address. The
/// router namespace plays a host outside the cluster: an echo server there
/// reports the source address it sees.
fn masquerade(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    let router = state.router.clone().expect("two segments have a router");
    let port = 8099;
    let server = netns::run_in(&router, "start an external echo server", || {
        weft_probe::Server::start(&weft_probe::ServeOpts::new(vec![(Protocol::Tcp, port)]))
            .map_err(|e| weft_lab::LabError::failed("start server", e.to_string()))
    })
    .unwrap();
    let opts = weft_probe::ProbeOpts {
        timeout: Duration::from_secs(3),
    };
    for pod in &state.pods {
        let node = state.node(&pod.node).unwrap();
        let gateway = state.segments[node.segment].gateways[0];
        let netns_path = Path::new("/run/netns").join(&pod.netns);
        let out = weft_probe::probe(
            &weft_probe::Target {
                netns: Some(netns_path.clone()),
                address: gateway,
                port,
                protocol: Protocol::Tcp,
            },
            &opts,
        );
        assert!(
            out.connected,
            "{}/{} -> external {gateway}: {out:?}",
            pod.namespace, pod.name
        );
        let seen = out.peer_seen.unwrap_or_default();
        let node_ip = node
            .addresses
            .iter()
            .find(|a| a.addr().is_ipv4())
            .unwrap()
            .addr();
        assert!(
            seen.starts_with(&format!("{node_ip}:")),
            "{}/{} reached the outside as {seen}, not as its node {node_ip}",
            pod.namespace,
            pod.name
        );
    }
    // Inside the cluster the source is the pod itself.
    let (a, b) = (&state.pods[0], &state.pods[1]);
    let target = b.ips.iter().copied().find(IpAddr::is_ipv4).unwrap();
    let out = weft_probe::probe(
        &weft_probe::Target {
            netns: Some(Path::new("/run/netns").join(&a.netns)),
            address: target,
            port: 80,
            protocol: Protocol::Tcp,
        },
        &opts,
    );
    let own = a.ips.iter().copied().find(IpAddr::is_ipv4).unwrap();
    assert!(
        out.peer_seen
            .as_deref()
            .is_some_and(|s| s.starts_with(&format!("{own}:"))),
        "pod-to-pod traffic was rewritten: {out:?}"
    );
    server.stop().unwrap();
}

/// `lab up` with three dual-stack nodes and the netpol model (nine pods,
/// three per node) on `ds`, then `lab sync`.
fn up(bin: &Path, backend: &str, segments: usize, ds: Datastore) -> Lab {
    let lab = Lab::new(&format!("lab-{backend}-{}", ds.as_str()));
    let opts = common::on(common::netpol_opts(bin, backend, segments), ds);
    let begun = Instant::now();
    let state = cluster::up(&lab.layout, &opts).unwrap_or_else(|e| {
        panic!(
            "lab up --backend {backend} --segments {segments} --datastore {}: {e}",
            ds.as_str()
        )
    });
    println!(
        "lab up --datastore {} --backend {backend}: {:.1?}",
        ds.as_str(),
        begun.elapsed()
    );
    assert_eq!(state.pods.len(), 9);
    sync(&lab.layout);
    lab
}

fn sync(layout: &Layout) {
    if let Err(e) = report::sync(layout, SYNC) {
        fail(layout, &format!("lab sync: {e}"));
    }
}

/// Panics with `msg` followed by what explains a lab failure: every node's
/// weft routes and the tail of its agent's log.
fn fail(layout: &Layout, msg: &str) -> ! {
    panic!("{msg}\n\n{}", diagnose(layout))
}

fn diagnose(layout: &Layout) -> String {
    let Ok(state) = LabState::require(layout) else {
        return "(no lab state)".into();
    };
    let mut out = String::new();
    for n in &state.nodes {
        let routes = |family: &str| {
            netns::ip_in(&n.netns, &[family, "route"]).unwrap_or_else(|e| e.to_string())
        };
        let log = NodePaths::new(layout.node_dir(&n.name)).weftd_log;
        out.push_str(&format!(
            "--- {} (segment {}) routes:\n{}{}--- {} weftd log tail:\n{}\n",
            n.name,
            n.segment,
            routes("-4"),
            routes("-6"),
            n.name,
            procs::tail_file(&log, 15)
        ));
    }
    out
}

/// Every pod reaches every pod (itself included) on TCP/80 and UDP/80 over
/// IPv4 and IPv6: pods² × 2 families per protocol.
fn full_mesh(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    let n = state.pods.len();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let records = probe::probe(
            &state,
            &ProbeQuery {
                from: Vec::new(),
                to: Vec::new(),
                port: 80,
                protocol,
                families: vec![4, 6],
                timeout: Duration::from_secs(2),
            },
        )
        .unwrap();
        assert_eq!(records.len(), n * n * 2, "{protocol:?}");
        if records.iter().any(|r| !r.connected) {
            fail(
                layout,
                &format!(
                    "{protocol:?} full mesh not connected:\n{}",
                    probe::render(&records)
                ),
            );
        }
    }
}

/// `weftctl lab pod add` returns a pod the cluster can reach on the first
/// try: the agents isolate a pod they have not seen yet (its policy may not
/// be in place), so the command waits until they have. The probes' budget
/// is below TCP's first SYN retransmission (1 s): a first SYN dropped for
/// an unknown pod fails them.
fn added_pod_talks_at_once(layout: &Layout) {
    use weft_lab::cli::{LabArgs, LabCmd, PodCmd};
    let lab = |cmd| {
        weft_lab::run_lab(LabArgs {
            state_dir: Some(layout.root().to_path_buf()),
            cmd,
        })
        .unwrap()
    };
    let added = lab(LabCmd::Pod(PodCmd::Add {
        pod: "x/fresh".into(),
        node: Some("node2".into()),
        labels: String::new(),
        ports: "tcp/80".into(),
    }));
    assert_eq!(added, 0);
    let state = LabState::require(layout).unwrap();
    let fresh = vec!["x/fresh".to_string()];
    for (from, to) in [(Vec::new(), fresh.clone()), (fresh.clone(), Vec::new())] {
        let records = probe::probe(
            &state,
            &ProbeQuery {
                from,
                to,
                port: 80,
                protocol: Protocol::Tcp,
                families: vec![4, 6],
                timeout: Duration::from_millis(800),
            },
        )
        .unwrap();
        if records.iter().any(|r| !r.connected) {
            fail(
                layout,
                &format!(
                    "a pod just added is not reachable at once:\n{}",
                    probe::render(&records)
                ),
            );
        }
    }
    assert_eq!(
        lab(LabCmd::Pod(PodCmd::Del {
            pod: "x/fresh".into()
        })),
        0
    );
}

/// Every node runs the BPF fast path (the full mesh above passed with it):
/// `weft_from_pod` on each pod veth, `weft_to_pod` on the uplink and, with
/// VXLAN, on the VXLAN device. (That it carries TCP past the nodes' stacks
/// is `weft-bpf`'s kernel test; the throughput benchmark measures it.)
fn fast_path_attached(layout: &Layout, vxlan: bool) {
    let state = LabState::require(layout).unwrap();
    let filter = |netns: &str, dev: &str| {
        let out = Command::new("ip")
            .args([
                "netns", "exec", netns, "tc", "filter", "show", "dev", dev, "ingress",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for node in &state.nodes {
        let mut uplinks = vec!["eth0"];
        if vxlan {
            uplinks.push("weft.vxlan"); // weftd's default VXLAN device
        }
        for dev in uplinks {
            let f = filter(&node.netns, dev);
            if !f.contains("weft_to_pod") {
                fail(
                    layout,
                    &format!("{}: no weft_to_pod on {dev}: {f}", node.name),
                );
            }
        }
        let links = netns::ip_in(&node.netns, &["-o", "link", "show", "type", "veth"]).unwrap();
        let pod_veths: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n))
            .filter(|n| n.starts_with("weft"))
            .collect();
        assert!(!pod_veths.is_empty(), "{}: no pod veths", node.name);
        for dev in pod_veths {
            let f = filter(&node.netns, dev);
            if !f.contains("weft_from_pod") {
                fail(
                    layout,
                    &format!("{}: no weft_from_pod on {dev}: {f}", node.name),
                );
            }
        }
    }
}

/// What a node's stack forwarded, per family: `ForwDatagrams` of
/// /proc/net/snmp, `Ip6OutForwDatagrams` of /proc/net/snmp6.
fn forwarded(netns: &str, family: u8) -> u64 {
    let file = if family == 4 {
        "/proc/net/snmp"
    } else {
        "/proc/net/snmp6"
    };
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", file])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if family == 6 {
        return text
            .lines()
            .find_map(|l| l.strip_prefix("Ip6OutForwDatagrams"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Ip6OutForwDatagrams in {text}"));
    }
    let mut ip = text.lines().filter(|l| l.starts_with("Ip: "));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// 32 MiB of TCP from a pod on node1 to a pod on node2 (both open: no
/// policy selects them), over IPv4 and over IPv6, cross neither node's
/// forwarding (and with VXLAN neither node's VXLAN device): node1's
/// `weft_from_pod` routes or encapsulates, node2's `weft_to_pod` delivers or
/// decapsulates on the uplink, and the ACKs go the same way back. This is
/// where the agents' maps meet real packets: a field that does not match
/// (MAC, VNI, port, addresses) would leave every packet to the stacks.
fn fast_path_skips_the_nodes_stacks(layout: &Layout, vxlan: bool) {
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    const MIB: usize = 1 << 20;
    const SENT: usize = 32 * MIB;

    let state = LabState::require(layout).unwrap();
    let on = |node: &str| state.pods.iter().find(|p| p.node == node).unwrap();
    let (from, to) = (on("node1"), on("node2"));
    let nodes = ["node1", "node2"].map(|n| state.node(n).unwrap().netns.clone());
    for family in [4u8, 6] {
        let addr = to.address(family).unwrap();
        let listener = netns::run_in(&to.netns, "listen in the server pod", || {
            Ok(TcpListener::bind((addr, 0)).unwrap())
        })
        .unwrap();
        let port = listener.local_addr().unwrap().port();
        let counters = || {
            nodes.clone().map(|n| {
                let dev = match vxlan {
                    true => weft_testkit::link_packets(&n, VXLAN_DEV).unwrap(),
                    false => (0, 0),
                };
                (forwarded(&n, family), dev.0, dev.1)
            })
        };
        let before = counters();
        let receiver = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            std::io::copy(&mut conn, &mut std::io::sink()).unwrap()
        });
        netns::run_in(&from.netns, "send from the client pod", || {
            let to = SocketAddr::new(addr, port);
            let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
            let chunk = vec![0x5a; MIB];
            for _ in 0..SENT / MIB {
                conn.write_all(&chunk).unwrap();
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(receiver.join().unwrap(), SENT as u64);
        let after = counters();
        for ((node, b), a) in ["node1", "node2"].iter().zip(before).zip(after) {
            let (fwd, rx, tx) = (a.0 - b.0, a.1 - b.1, a.2 - b.2);
            if fwd > 20 || rx > 20 || tx > 20 {
                fail(
                    layout,
                    &format!(
                        "IPv{family}: {node} forwarded {fwd} packets on its stack; \
                         its {VXLAN_DEV} carried {rx} in, {tx} out"
                    ),
                );
            }
        }
    }
}

/// Which device a route to a peer's pod CIDR leaves through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `via <peer underlay address> dev eth0` (host-gw).
    Underlay,
    /// `dev weft.vxlan`.
    Vxlan,
}

/// weft's routes in `netns`, both families (`ip route show proto 87`).
fn weft_routes(netns_name: &str) -> Vec<String> {
    ["-4", "-6"]
        .iter()
        .flat_map(|f| {
            netns::ip_in(netns_name, &[f, "route", "show", "proto", ROUTE_PROTO])
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `node`'s weft routes are exactly one per peer pod CIDR, each through
/// the device `expect` names for that peer.
fn routes_use(layout: &Layout, node: &str, expect: impl Fn(&weft_lab::state::NodeRecord) -> Via) {
    let state = LabState::require(layout).unwrap();
    let me = state.node(node).unwrap();
    let routes = weft_routes(&me.netns);
    let mut want = 0;
    for peer in state.nodes.iter().filter(|p| p.name != node) {
        let via = expect(peer);
        for cidr in &peer.pod_cidrs {
            want += 1;
            let line = routes
                .iter()
                .find(|l| l.starts_with(&format!("{cidr} ")))
                .unwrap_or_else(|| {
                    fail(
                        layout,
                        &format!("{node}: no weft route to {} ({cidr})", peer.name),
                    )
                });
            let ok = match via {
                Via::Vxlan => line.contains(&format!("dev {VXLAN_DEV}")),
                Via::Underlay => {
                    let gw = peer
                        .addresses
                        .iter()
                        .find(|a| a.addr().is_ipv4() == matches!(cidr, IpNet::V4(_)))
                        .unwrap()
                        .addr();
                    line.contains(&format!("via {gw} dev eth0"))
                }
            };
            if !ok {
                fail(
                    layout,
                    &format!(
                        "{node}: route to {} ({cidr}) should go {via:?}: {line}",
                        peer.name
                    ),
                );
            }
        }
    }
    assert_eq!(routes.len(), want, "{node}: stray weft routes: {routes:#?}");
}

/// `lab status --json` tells each node's segment; nodes alternate, and
/// the router and second bridge exist.
fn segments_in_status(layout: &Layout) {
    let status = serde_json::to_value(report::status(layout).unwrap()).unwrap();
    let segs: Vec<u64> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["segment"].as_u64().unwrap())
        .collect();
    assert_eq!(segs, [0, 1, 0], "{status:#}");
    assert_eq!(status["segments"].as_array().unwrap().len(), 2);
    assert_eq!(status["segments"][1]["gateways"][0], "172.30.1.1");
    assert_eq!(status["nodes"][1]["addresses"][0], "172.30.1.12/24");
    let router = layout.router_netns();
    assert_eq!(status["router"], router.as_str());
    for ns in [router, layout.underlay_netns(1)] {
        assert!(netns::exists(&ns), "{ns} missing");
    }
    // Forwarding is on in the router namespace, where it belongs.
    let out = Command::new("ip")
        .args(["netns", "exec", &layout.router_netns()])
        .args(["sysctl", "-n", "net.ipv4.ip_forward"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

/// Pings a pod on node2 from a pod on node1 (IPv4 and IPv6, 250 each at
/// 20 ms) while node1's weftd is killed with SIGKILL and started again as
/// the lab starts it: no packet may be lost, and the new agent's first
/// passes must find nothing to change.
fn kill_under_traffic(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    let on = |node: &str| state.pods.iter().find(|p| p.node == node).unwrap();
    let (from, to) = (on("node1"), on("node2"));
    let count = 250;
    let pings: Vec<_> = [4u8, 6]
        .iter()
        .map(|&family| {
            let addr = to.address(family).unwrap().to_string();
            let child = Command::new("ip")
                .args(["netns", "exec", &from.netns, "ping", &format!("-{family}")])
                .args(["-q", "-n", "-i", "0.02", "-W", "1", "-c"])
                .arg(count.to_string())
                .arg(&addr)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (addr, child)
        })
        .collect();
    // Let traffic flow first, then kill in the middle of it.
    std::thread::sleep(Duration::from_millis(1500));
    let restart = agents::restart(layout, "node1", true, Duration::from_secs(10))
        .unwrap_or_else(|e| fail(layout, &format!("restart node1's agent: {e}")));
    let old = restart.stopped.expect("node1's agent was running");
    assert!(!procs::alive(&old), "the killed agent is gone");
    assert_ne!(old, restart.started);
    for (addr, child) in pings {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let summary = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| {
                panic!(
                    "ping {addr}: no summary: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        if !summary.starts_with(&format!("{count} packets transmitted, {count} received")) {
            fail(
                layout,
                &format!(
                    "ping {} -> {} ({addr}) lost packets across the agent restart \
                     (ready after {:?}): {summary}",
                    from.key(),
                    to.key(),
                    restart.ready_after
                ),
            );
        }
    }
    // The restarted agent adopted the kernel state: nothing applied,
    // published or rewritten since it started.
    let text = std::fs::read(&restart.log).unwrap();
    let since = String::from_utf8_lossy(&text[restart.log_offset as usize..]);
    assert!(
        since.contains("weftd starting"),
        "the new agent's log: {since}"
    );
    for change in [
        "applied changes",
        "published node annotations",
        "wrote node state",
    ] {
        assert!(
            !since.contains(change),
            "the restarted agent reported {change:?} on a kernel it should have adopted:\n{since}"
        );
    }
    let ready =
        agents::readiness(LabState::require(layout).unwrap().node("node1").unwrap()).unwrap();
    assert!(ready.ready, "{ready:?}");
}

/// What the other nodes hold towards `peer`: routes to its pod CIDRs, FDB
/// entries to its underlay address, neighbours for its overlay gateways.
fn held_towards(netns_name: &str, peer: &weft_lab::state::NodeRecord) -> Vec<String> {
    let mut held = Vec::new();
    let routes = weft_routes(netns_name);
    for cidr in &peer.pod_cidrs {
        if routes.iter().any(|l| l.starts_with(&format!("{cidr} "))) {
            held.push(format!("route {cidr}"));
        }
    }
    let fdb = Command::new("bridge")
        .args(["-n", netns_name, "fdb", "show", "dev", VXLAN_DEV])
        .output()
        .unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    for a in &peer.addresses {
        let dst = format!("dst {} ", a.addr());
        if let Some(l) = fdb.lines().find(|l| format!("{l} ").contains(&dst)) {
            held.push(format!("fdb {l}"));
        }
    }
    let neigh = netns::ip_in(netns_name, &["neigh", "show", "dev", VXLAN_DEV]).unwrap();
    for cidr in &peer.pod_cidrs {
        let gw = first_host(cidr);
        if let Some(l) = neigh.lines().find(|l| l.starts_with(&format!("{gw} "))) {
            held.push(format!("neighbour {l}"));
        }
    }
    held
}

fn first_host(net: &IpNet) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    }
}

/// Deleting node3's Node object (its weftd keeps running) removes every
/// route, FDB entry and neighbour towards it on the others; re-applying
/// the Node as the lab registered it brings the full mesh back.
fn node_leaves_and_joins(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    let store = Store::open(layout).unwrap();
    let leaving = state.node("node3").unwrap().clone();
    let others: Vec<_> = state.nodes.iter().filter(|n| n.name != "node3").collect();
    // Two routes, one FDB entry (the IPv4 VTEP), two neighbours.
    let expected = 5;
    for n in &others {
        let held = held_towards(&n.netns, &leaving);
        assert_eq!(held.len(), expected, "{} before: {held:#?}", n.name);
    }

    store.delete("Node", None, "node3").unwrap().unwrap();
    sync(layout);
    for n in &others {
        let held = held_towards(&n.netns, &leaving);
        if !held.is_empty() {
            fail(
                layout,
                &format!(
                    "{} still holds towards the deleted node3: {held:#?}",
                    n.name
                ),
            );
        }
    }

    cluster::register_node(&store, &leaving, &state.families).unwrap();
    sync(layout);
    for n in &others {
        let held = held_towards(&n.netns, &leaving);
        if held.len() != expected {
            fail(
                layout,
                &format!("{} after node3 rejoined: {held:#?}", n.name),
            );
        }
    }
    full_mesh(layout);
}

/// node3 moves to other underlay addresses (new ones on its eth0, its
/// InternalIPs updated, the old ones removed): the other nodes' routes,
/// FDB and neighbours follow, and the full mesh connects again.
fn node_changes_address(layout: &Layout) {
    let store = Store::open(layout).unwrap();
    let moved = {
        // The lab's record follows the node, as `lab status` should show.
        let _lock = LabLock::acquire(layout).unwrap();
        let mut state = LabState::require(layout).unwrap();
        let node = state.nodes.iter_mut().find(|n| n.name == "node3").unwrap();
        let old = std::mem::replace(
            &mut node.addresses,
            vec![
                "172.30.0.250/24".parse().unwrap(),
                "fd00:30::250/64".parse().unwrap(),
            ],
        );
        // Else removing the old primary IPv4 address later would take the
        // new one (a secondary in the same subnet) with it.
        let key = "net.ipv4.conf.eth0.promote_secondaries=1";
        let out = Command::new("ip")
            .args(["netns", "exec", &node.netns, "sysctl", "-qw", key])
            .status()
            .unwrap();
        assert!(out.success(), "{key} in {}", node.netns);
        for a in &node.addresses {
            let a = a.to_string();
            netns::ip_in(&node.netns, &["addr", "add", &a, "dev", "eth0", "nodad"]).unwrap();
        }
        let moved = (node.clone(), old);
        state.save(layout).unwrap();
        moved
    };
    let (node, old) = moved;
    let families = LabState::require(layout).unwrap().families;
    let addresses = cluster::node_object(&node, &families)["status"]["addresses"].clone();
    store
        .update("Node", None, "node3", |n| {
            n["status"]["addresses"] = addresses.clone()
        })
        .unwrap();
    sync(layout);
    for a in &old {
        netns::ip_in(&node.netns, &["addr", "del", &a.to_string(), "dev", "eth0"]).unwrap();
    }
    let state = LabState::require(layout).unwrap();
    for n in state.nodes.iter().filter(|n| n.name != "node3") {
        let held = held_towards(&n.netns, &node);
        if held.len() != 5 || !held.iter().any(|h| h.contains("dst 172.30.0.250")) {
            fail(
                layout,
                &format!("{} after node3 moved to 172.30.0.250: {held:#?}", n.name),
            );
        }
    }
    full_mesh(layout);
}

/// `lab pod del` releases the pod's addresses in its node's IPAM store,
/// and a new pod on that node gets addresses and is reachable.
fn pod_delete_releases(layout: &Layout) {
    let mut state = LabState::require(layout).unwrap();
    let store = Store::open(layout).unwrap();
    let gone = state.pod("z/c").unwrap().clone();
    kubelet::del_pod(layout, &mut state, &store, "z/c").unwrap();
    let held = ipam_held(layout, &gone.node);
    for ip in &gone.ips {
        assert!(!held.contains(ip), "{ip} still reserved: {held:?}");
    }
    assert!(!netns::exists(&gone.netns));
    assert!(store.get("Pod", Some("z"), "c").unwrap().is_none());

    let new = kubelet::add_pod(
        layout,
        &mut state,
        &store,
        &common::pod("z", "d", &gone.node),
    )
    .unwrap();
    assert_eq!(new.ips.len(), 2, "{new:?}");
    let node = state.node(&gone.node).unwrap();
    for ip in &new.ips {
        assert!(node.pod_cidrs.iter().any(|c| c.contains(ip)), "{ip}");
    }
    let held = ipam_held(layout, &gone.node);
    assert!(new.ips.iter().all(|ip| held.contains(ip)), "{held:?}");
    sync(layout);
    full_mesh(layout);
}

/// `lab down` stops every recorded process, removes every namespace with
/// the lab's prefix and every file under the state directory.
fn down_leaves_nothing(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    let procs_before: Vec<_> = state
        .nodes
        .iter()
        .filter_map(|n| n.weftd)
        .chain(state.pods.iter().filter_map(|p| p.server))
        .collect();
    assert!(procs_before.len() >= 3 + 9, "{procs_before:?}");
    cluster::down(layout).unwrap();
    assert_eq!(common::own_netns(layout), Vec::<String>::new());
    for p in &procs_before {
        assert!(!procs::alive(p), "pid {} still runs", p.pid);
    }
    let root = layout.root().to_string_lossy().into_owned();
    let pgrep = Command::new("pgrep")
        .args(["-a", "-f", &root])
        .output()
        .unwrap();
    assert!(
        pgrep.stdout.is_empty(),
        "processes still name {root}: {}",
        String::from_utf8_lossy(&pgrep.stdout)
    );
    assert!(!layout.root().exists(), "{root} remains");
}
