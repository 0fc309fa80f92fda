//! Changes converge without restarts (policy added, changed, removed; pod
//! and namespace relabelled; pod deleted and re-added), a new pod is never
//! reachable before its isolation is programmed, and a pod cannot send
//! with an address that is not its own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol as SockProtocol, SockAddr, Socket, Type};
use weft_lab::kubelet::{self, PodSpec};
use weft_lab::objects::LabelEdit;
use weft_lab::store::Store;
use weft_lab::{LabState, Layout, netns, report};
use weft_model::Protocol;
use weft_probe::{ProbeOpts, Target};

use super::cases::{apply, policy};
use super::check::{converge, delete_all_policies};

/// The netpol model's pod `ns/name` as `lab pod add` would start it again.
fn model_pod(ns: &str, name: &str, node: &str) -> PodSpec {
    PodSpec {
        namespace: ns.into(),
        name: name.into(),
        node: Some(node.into()),
        labels: [("pod".to_string(), name.to_string())].into(),
        ports: super::check::PORTS.to_vec(),
    }
}

fn label(layout: &Layout, kind: &str, ns: Option<&str>, name: &str, edit: &str) {
    Store::open(layout)
        .unwrap()
        .label(kind, ns, name, &[LabelEdit::parse(edit).unwrap()])
        .unwrap_or_else(|e| panic!("label {kind} {name} {edit}: {e}"));
}

/// Every kind of change, each followed by sync and a full comparison.
pub fn converge_on_changes(layout: &Layout) {
    delete_all_policies(layout);
    apply(
        layout,
        &policy(
            "x",
            "restrict",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}",
        ),
        "restrict",
    );
    converge(layout, "policy added");
    apply(
        layout,
        &policy(
            "x",
            "restrict",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: 80}]}]}",
        ),
        "restrict changed",
    );
    converge(layout, "policy changed");
    Store::open(layout)
        .unwrap()
        .delete("NetworkPolicy", Some("x"), "restrict")
        .unwrap();
    let o = converge(layout, "policy removed");
    assert_eq!(o.denied, 0, "nothing is isolated any more");

    apply(
        layout,
        &(policy(
            "x",
            "team",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]}",
        ) + &policy(
            "z",
            "untiered",
            "{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]}]}",
        )),
        "label-driven policies",
    );
    converge(layout, "label-driven policies");
    label(layout, "Namespace", None, "y", "team=blue");
    converge(layout, "namespace y labelled team=blue");
    label(layout, "Pod", Some("z"), "b", "tier=front");
    converge(layout, "pod z/b labelled tier=front");
    label(layout, "Namespace", None, "y", "team-");
    label(layout, "Pod", Some("z"), "b", "tier-");
    converge(layout, "labels removed again");

    delete_all_policies(layout);
    apply(
        layout,
        &policy(
            "y",
            "from-b",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]}]}",
        ),
        "from-b",
    );
    converge(layout, "from pods b");
    let store = Store::open(layout).unwrap();
    let mut state = LabState::require(layout).unwrap();
    let node = state.pod("x/b").unwrap().node.clone();
    kubelet::del_pod(layout, &mut state, &store, "x/b").unwrap();
    converge(layout, "pod x/b deleted");
    kubelet::add_pod(layout, &mut state, &store, &model_pod("x", "b", &node)).unwrap();
    converge(layout, "pod x/b added again");
    delete_all_policies(layout);
}

/// A pod started in a namespace with deny-all never accepts a connection:
/// probed from another node and from its own node, from another thread,
/// from the moment its address is recorded (right after CNI ADD, before
/// its server starts and before the model has its address) until well
/// after the agents applied its revision.
pub fn no_window(layout: &Layout) {
    delete_all_policies(layout);
    apply(
        layout,
        &policy("x", "deny-all", "{podSelector: {}}"),
        "deny-all",
    );
    converge(layout, "deny-all in x");
    let state = LabState::require(layout).unwrap();
    let node = state.pod("x/a").unwrap().node.clone();
    let clients: Vec<String> = ["x/a", "y/b"]
        .iter()
        .map(|k| state.pod(k).unwrap().netns.clone())
        .collect();
    let stop = AtomicBool::new(false);
    let seen: Mutex<(usize, Vec<String>)> = Mutex::new((0, Vec::new()));
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let Some(ips) = LabState::load(layout)
                    .ok()
                    .flatten()
                    .and_then(|st| st.pod("x/new").ok().map(|p| p.ips.clone()))
                    .filter(|ips| !ips.is_empty())
                else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let targets: Vec<Target> = clients
                    .iter()
                    .flat_map(|c| {
                        ips.iter().flat_map(move |ip| {
                            [Protocol::Tcp, Protocol::Udp].map(|protocol| Target {
                                netns: Some(netns::path(c)),
                                address: *ip,
                                port: 80,
                                protocol,
                            })
                        })
                    })
                    .collect();
                let opts = ProbeOpts {
                    timeout: Duration::from_millis(150),
                };
                let results = weft_probe::probe_many(&targets, &opts, targets.len());
                let mut seen = seen.lock().unwrap();
                seen.0 += results.len();
                for (t, r) in targets.iter().zip(&results) {
                    if r.connected {
                        seen.1
                            .push(format!("{:?} {} from {:?}", t.protocol, t.address, t.netns));
                    }
                }
            }
        });
        let mut st = LabState::require(layout).unwrap();
        let store = Store::open(layout).unwrap();
        let added = kubelet::add_pod(layout, &mut st, &store, &model_pod("x", "new", &node));
        if added.is_ok() {
            report::sync(layout, Duration::from_secs(30)).unwrap();
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        stop.store(true, Ordering::Relaxed);
        added.unwrap();
    });
    let (probes, leaks) = seen.into_inner().unwrap();
    assert!(
        leaks.is_empty(),
        "x/new accepted connections under deny-all: {leaks:?}"
    );
    assert!(
        probes >= 8,
        "only {probes} probes reached x/new's addresses"
    );
    println!("    no window: {probes} probes at x/new, none connected");
    converge(layout, "x/new isolated by deny-all");
    // The control: without the policy, the same pod is reachable.
    delete_all_policies(layout);
    let o = converge(layout, "x/new reachable without policy");
    assert_eq!(o.denied, 0);
    let mut st = LabState::require(layout).unwrap();
    kubelet::del_pod(layout, &mut st, &Store::open(layout).unwrap(), "x/new").unwrap();
}

/// A pod that adds a second address and sends from it is dropped; the
/// same connection from its own address goes through. Both families, to
/// a server on its own node and one on another node, TCP and UDP.
pub fn anti_spoofing(layout: &Layout) {
    delete_all_policies(layout);
    report::sync(layout, Duration::from_secs(30)).unwrap();
    let state = LabState::require(layout).unwrap();
    let client = state.pod("x/a").unwrap();
    let same_node = state
        .pods
        .iter()
        .find(|p| p.node == client.node && p.key() != client.key())
        .unwrap();
    let other_node = state.pods.iter().find(|p| p.node != client.node).unwrap();
    // Another pod's address (a forged identity) per family.
    let victim = state.pod("z/c").unwrap();
    for family in [4u8, 6] {
        let real = client.address(family).unwrap();
        let forged = victim.address(family).unwrap();
        let plen = if family == 4 { "32" } else { "128" };
        let mut args = vec!["addr", "add"];
        let cidr = format!("{forged}/{plen}");
        args.extend([cidr.as_str(), "dev", "eth0"]);
        if family == 6 {
            args.push("nodad");
        }
        netns::ip_in(&client.netns, &args).unwrap();
        for server in [same_node, other_node] {
            let dst = server.address(family).unwrap();
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let what = format!("{protocol:?} {} -> {} ({dst})", client.key(), server.key());
                assert!(
                    connect_from(&client.netns, real, dst, protocol),
                    "{what} from its own address {real} failed"
                );
                assert!(
                    !connect_from(&client.netns, forged, dst, protocol),
                    "{what} from the forged address {forged} went through"
                );
            }
        }
        netns::ip_in(&client.netns, &["addr", "del", &cidr, "dev", "eth0"]).unwrap();
    }
}

/// One echo exchange with the lab server at `dst`:80 from source `src`,
/// inside `ns`; whether the echo came back within half a second (lab round
/// trips take well under a millisecond).
fn connect_from(ns: &str, src: IpAddr, dst: IpAddr, protocol: Protocol) -> bool {
    netns::run_in(ns, "probe from a chosen source", || {
        Ok(echo(src, dst, protocol).is_ok())
    })
    .unwrap()
}

fn echo(src: IpAddr, dst: IpAddr, protocol: Protocol) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let timeout = Duration::from_millis(500);
    let dst = SocketAddr::new(dst, 80);
    let (ty, proto) = match protocol {
        Protocol::Udp => (Type::DGRAM, SockProtocol::UDP),
        _ => (Type::STREAM, SockProtocol::TCP),
    };
    let socket = Socket::new(Domain::for_address(dst), ty, Some(proto))?;
    socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    socket.connect_timeout(&SockAddr::from(dst), timeout)?;
    let mut socket: std::net::TcpStream = match protocol {
        Protocol::Udp => {
            let udp: std::net::UdpSocket = socket.into();
            udp.send(b"spoof-check\n")?;
            let mut buf = [0u8; 256];
            let n = udp.recv(&mut buf)?;
            return if buf[..n].starts_with(b"spoof-check") {
                Ok(())
            } else {
                Err(std::io::Error::other("foreign reply"))
            };
        }
        _ => socket.into(),
    };
    socket.write_all(b"spoof-check\n")?;
    let mut buf = [0u8; 256];
    let n = socket.read(&mut buf)?;
    if buf[..n].starts_with(b"spoof-check") {
        Ok(())
    } else {
        Err(std::io::Error::other("short or foreign reply"))
    }
}
