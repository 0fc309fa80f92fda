//! The fast path between two "nodes" (namespaces joined by an uplink veth)
//! with a routed pod each, attached the way weft's plugin attaches pods:
//! TCP between open pods skips both nodes' stacks entirely (an nftables
//! forward counter on each node stays at zero), and a pod under policy
//! (not open) keeps the stack; over VXLAN the programs encapsulate and
//! decapsulate themselves, interoperating with a node whose kernel VXLAN
//! device does it. Kernel tier: needs root and iperf3.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command};
use std::time::Duration;

use weft_bpf::{FastPath, LocalPod, Remote, VxlanEncap};
use weft_netlink::Handle;
use weft_testkit::{NetNs, veth_between};

const HOST_MAC: &str = "ee:ee:ee:ee:ee:ee";

struct Node {
    ns: NetNs,
    pod: NetNs,
    pod_ip: Ipv4Addr,
    pod_mac: [u8; 6],
    host_if: String,
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A node namespace with an uplink address and one pod at 10.1.<n>.2.
fn node(n: u8) -> Node {
    let ns = NetNs::new(&format!("fpn{n}")).unwrap();
    let pod = NetNs::new(&format!("fpp{n}")).unwrap();
    let host_if = format!("weftfp{n}");
    let pod_ip = Ipv4Addr::new(10, 1, n, 2);
    let pod_mac = [0x02, 0, 0, 0, 0, n];
    veth_between(&ns, &host_if, &pod, "eth0").unwrap();
    let sh = |netns: &NetNs, cmd: &str| {
        let out = netns.exec("sh", &["-c", cmd]).unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&ns, "sysctl -qw net.ipv4.ip_forward=1");
    sh(&ns, &format!("ip link set {host_if} address {HOST_MAC}"));
    sh(
        &ns,
        &format!("ip route add {pod_ip}/32 dev {host_if} scope link"),
    );
    sh(
        &ns,
        &format!(
            "ip neigh replace {pod_ip} lladdr {} dev {host_if} nud permanent",
            mac_str(pod_mac)
        ),
    );
    sh(
        &pod,
        &format!("ip link set eth0 address {}", mac_str(pod_mac)),
    );
    sh(&pod, &format!("ip addr add {pod_ip}/32 dev eth0"));
    sh(&pod, "ip route add 169.254.1.1 dev eth0 scope link");
    sh(&pod, "ip route add default via 169.254.1.1 dev eth0");
    sh(
        &pod,
        &format!("ip neigh replace 169.254.1.1 lladdr {HOST_MAC} dev eth0 nud permanent"),
    );
    // What the fast path must not pass: a forward-hook counter of TCP.
    sh(
        &ns,
        "nft add table inet t && nft add chain inet t fc '{ type filter hook forward priority 0; }' && nft add rule inet t fc meta l4proto tcp counter",
    );
    Node {
        ns,
        pod,
        pod_ip,
        pod_mac,
        host_if,
    }
}

fn forwarded_tcp(n: &Node) -> u64 {
    let out =
        n.ns.exec("nft", &["list", "chain", "inet", "t", "fc"])
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {text}"))
}

fn ifindex(ns: &NetNs, name: &str) -> u32 {
    let mut h = Handle::in_netns(&weft_netlink::Netns::open(ns.path()).unwrap()).unwrap();
    h.link(name).unwrap().unwrap().index
}

fn attach(fp: &FastPath, n: &Node, uplink: &str, remote: &str, open: bool) {
    let netns = weft_netlink::Netns::open(n.ns.path()).unwrap();
    let mut h = Handle::in_netns(&netns).unwrap();
    let host = ifindex(&n.ns, &n.host_if);
    let up = ifindex(&n.ns, uplink);
    for (index, prog, name) in [
        (host, fp.from_pod(), "weft_from_pod"),
        (up, fp.to_pod(), "weft_to_pod"),
    ] {
        h.ensure_clsact(index).unwrap();
        h.attach_bpf_ingress(index, prog.raw_fd(), name).unwrap();
    }
    let mut local = BTreeMap::new();
    local.insert(
        n.pod_ip.into(),
        LocalPod {
            host_ifindex: host,
            pod_mac: n.pod_mac,
            host_mac: [0xee; 6],
            open,
        },
    );
    fp.sync_local(&local).unwrap();
    let mut rem = BTreeMap::new();
    rem.insert(remote.parse().unwrap(), Remote::Route { ifindex: up });
    fp.sync_remote(&rem).unwrap();
}

/// One second of iperf3 from `from`'s pod to `to`'s; returns bytes received.
fn transfer(from: &Node, to: &Node) -> u64 {
    let mut server: Child = to
        .pod
        .command("iperf3")
        .args(["-s", "-1", "-B", &to.pod_ip.to_string(), "-p", "5301"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = from
        .pod
        .exec(
            "iperf3",
            &[
                "-c",
                &to.pod_ip.to_string(),
                "-p",
                "5301",
                "-t",
                "1",
                "-J",
                "--connect-timeout",
                "3000",
            ],
        )
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let json = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0)
}

/// Nodes 1 and 2 joined by an uplink veth (`up1`–`up2`, no addresses
/// yet); `None` when `test` cannot run here.
fn two_nodes(test: &str) -> Option<(Node, Node)> {
    if !weft_testkit::privileged(test) {
        return None;
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        panic!("iperf3 is missing (scripts/install-deps installs it)");
    }
    let n1 = node(1);
    let n2 = node(2);
    veth_between(&n1.ns, "up1", &n2.ns, "up2").unwrap();
    Some((n1, n2))
}

#[test]
fn open_pods_skip_both_stacks_and_policed_pods_do_not() {
    let Some((n1, n2)) = two_nodes("open_pods_skip_both_stacks_and_policed_pods_do_not") else {
        return;
    };
    n1.ns
        .ip(&["addr", "add", "172.31.0.1/24", "dev", "up1"])
        .unwrap();
    n2.ns
        .ip(&["addr", "add", "172.31.0.2/24", "dev", "up2"])
        .unwrap();
    n1.ns
        .ip(&["route", "add", "10.1.2.0/24", "via", "172.31.0.2"])
        .unwrap();
    n2.ns
        .ip(&["route", "add", "10.1.1.0/24", "via", "172.31.0.1"])
        .unwrap();

    // Without the fast path: the stack forwards (the counters move).
    assert!(transfer(&n1, &n2) > 0, "pods cannot talk over the stack");
    assert!(forwarded_tcp(&n1) > 0 && forwarded_tcp(&n2) > 0);
    for n in [&n1, &n2] {
        let out =
            n.ns.exec(
                "sh",
                &[
                    "-c",
                    "nft flush chain inet t fc && nft add rule inet t fc meta l4proto tcp counter",
                ],
            )
            .unwrap();
        assert!(out.status.success());
        assert_eq!(forwarded_tcp(n), 0);
    }

    // With it, open pods: neither node forwards a single TCP packet.
    let fp1 = FastPath::new().unwrap();
    let fp2 = FastPath::new().unwrap();
    attach(&fp1, &n1, "up1", "10.1.2.0/24", true);
    attach(&fp2, &n2, "up2", "10.1.1.0/24", true);
    let bytes = transfer(&n1, &n2);
    assert!(bytes > 1_000_000, "only {bytes} bytes over the fast path");
    assert_eq!(forwarded_tcp(&n1), 0, "node1 forwarded TCP");
    assert_eq!(forwarded_tcp(&n2), 0, "node2 forwarded TCP");
    assert!(fp1.flow_count().unwrap() >= 1 && fp2.flow_count().unwrap() >= 1);
    // The reverse direction (node2's pod starts) goes fast as well.
    assert!(transfer(&n2, &n1) > 1_000_000);
    assert_eq!(forwarded_tcp(&n1) + forwarded_tcp(&n2), 0);

    // A restarted agent takes over the maps the attached programs run
    // with: the flows it knew stay known, and new programs over the same
    // maps keep the pods fast.
    let up1 = ifindex(&n1.ns, "up1");
    let netns1 = weft_netlink::Netns::open(n1.ns.path()).unwrap();
    let (id, name) = Handle::in_netns(&netns1)
        .unwrap()
        .bpf_ingress_program(up1)
        .unwrap()
        .expect("to_pod is attached to node1's uplink");
    assert_eq!(name, "weft_to_pod");
    let flows = fp1.flow_count().unwrap();
    drop(fp1);
    let fp1 = FastPath::adopt(id).unwrap().expect("adopts its own maps");
    assert_eq!(fp1.flow_count().unwrap(), flows);
    attach(&fp1, &n1, "up1", "10.1.2.0/24", true);
    assert!(transfer(&n1, &n2) > 1_000_000);
    assert_eq!(forwarded_tcp(&n1) + forwarded_tcp(&n2), 0);
    assert!(
        FastPath::adopt(u32::MAX).unwrap().is_none(),
        "no such program"
    );

    // Node2's pod comes under a policy: node2 keeps its flows on the stack
    // (node1's pod is still open, so node1 does not).
    attach(&fp2, &n2, "up2", "10.1.1.0/24", false);
    assert!(transfer(&n1, &n2) > 1_000_000);
    assert_eq!(forwarded_tcp(&n1), 0, "node1's open pod stays fast");
    assert!(
        forwarded_tcp(&n2) > 0,
        "node2 must see its policed pod's flow"
    );

    // The fast path turned off (weftd --fast-path off detaches it): node1's
    // programs are gone and its stack forwards again.
    let mut h1 = Handle::in_netns(&netns1).unwrap();
    for link in [up1, ifindex(&n1.ns, &n1.host_if)] {
        h1.detach_bpf_ingress(link).unwrap();
        h1.detach_bpf_ingress(link).unwrap(); // absent is fine
        assert_eq!(h1.bpf_ingress_program(link).unwrap(), None);
    }
    let before = forwarded_tcp(&n1);
    assert!(transfer(&n1, &n2) > 1_000_000);
    assert!(
        forwarded_tcp(&n1) > before,
        "node1 forwards on its stack again"
    );
}

/// A link's packet counters in `ns`: (received, transmitted).
fn packets(ns: &NetNs, link: &str) -> (u64, u64) {
    weft_testkit::link_packets(ns.name(), link).unwrap()
}

#[test]
fn vxlan_flows_skip_both_vxlan_devices_and_interoperate_with_the_kernels() {
    let Some((n1, n2)) =
        two_nodes("vxlan_flows_skip_both_vxlan_devices_and_interoperate_with_the_kernels")
    else {
        return;
    };
    // The VXLAN backend as weftd sets it up: a device without learning,
    // and per peer a route via its VTEP address, a neighbour entry for it
    // and an FDB entry to its underlay address.
    let mac = |n: u8| [0x02, 0xcc, 0, 0, 0, n];
    for (n, me, peer) in [(&n1, 1u8, 2u8), (&n2, 2, 1)] {
        let sh = |cmd: String| {
            let out = n.ns.exec("sh", &["-c", &cmd]).unwrap();
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(format!(
            "ip addr add 172.31.0.{me}/24 dev up{me} && \
             ip link add weftvx type vxlan id 1 local 172.31.0.{me} dev up{me} dstport 8472 nolearning && \
             ip link set weftvx address {} mtu 1450 up && \
             ip addr add 10.1.{me}.0/32 dev weftvx && \
             ip neigh replace 10.1.{peer}.0 lladdr {} dev weftvx nud permanent && \
             bridge fdb append {} dev weftvx dst 172.31.0.{peer} && \
             ip route add 10.1.{peer}.0/24 via 10.1.{peer}.0 dev weftvx onlink",
            mac_str(mac(me)),
            mac_str(mac(peer)),
            mac_str(mac(peer)),
        ));
        n.pod.ip(&["link", "set", "eth0", "mtu", "1450"]).unwrap();
    }

    // The kernel's VXLAN devices carry it without the fast path.
    assert!(
        transfer(&n1, &n2) > 1_000_000,
        "no VXLAN without the fast path"
    );
    let before = [packets(&n1.ns, "weftvx"), packets(&n2.ns, "weftvx")];
    assert!(before[0].1 > 1000 && before[1].0 > 1000, "{before:?}");

    // With it on both nodes: neither device sends or receives a packet of
    // the transfer (a few of the untimed neighbour and ARP kind at most),
    // and neither node forwards TCP.
    let fp1 = FastPath::new().unwrap();
    let fp2 = FastPath::new().unwrap();
    let encap = |me: u8, peer: u8| VxlanEncap {
        underlay_ifindex: ifindex(if me == 1 { &n1.ns } else { &n2.ns }, &format!("up{me}")),
        local: Ipv4Addr::new(172, 31, 0, me),
        peer: Ipv4Addr::new(172, 31, 0, peer),
        local_mac: mac(me),
        peer_mac: mac(peer),
        vni: 1,
        port: 8472,
    };
    attach(&fp1, &n1, "up1", "10.1.2.0/24", true);
    attach(&fp2, &n2, "up2", "10.1.1.0/24", true);
    fp1.sync_remote(&BTreeMap::from([(
        "10.1.2.0/24".parse().unwrap(),
        Remote::Vxlan(encap(1, 2)),
    )]))
    .unwrap();
    fp2.sync_remote(&BTreeMap::from([(
        "10.1.1.0/24".parse().unwrap(),
        Remote::Vxlan(encap(2, 1)),
    )]))
    .unwrap();
    let tcp_before = forwarded_tcp(&n1) + forwarded_tcp(&n2);
    let before = [packets(&n1.ns, "weftvx"), packets(&n2.ns, "weftvx")];
    assert!(
        transfer(&n1, &n2) > 1_000_000,
        "no VXLAN over the fast path"
    );
    assert!(transfer(&n2, &n1) > 1_000_000);
    let after = [packets(&n1.ns, "weftvx"), packets(&n2.ns, "weftvx")];
    for i in 0..2 {
        let rx = after[i].0 - before[i].0;
        let tx = after[i].1 - before[i].1;
        assert!(
            rx < 10 && tx < 10,
            "node{}'s VXLAN device moved {rx}/{tx} packets",
            i + 1
        );
    }
    assert_eq!(forwarded_tcp(&n1) + forwarded_tcp(&n2), tcp_before);

    // Node1 without the fast path (its kernel VXLAN device encapsulates
    // and decapsulates): node2's programs still talk to it.
    let netns1 = weft_netlink::Netns::open(n1.ns.path()).unwrap();
    let mut h1 = Handle::in_netns(&netns1).unwrap();
    for link in [ifindex(&n1.ns, "up1"), ifindex(&n1.ns, &n1.host_if)] {
        h1.detach_bpf_ingress(link).unwrap();
    }
    let before = packets(&n1.ns, "weftvx");
    assert!(transfer(&n1, &n2) > 1_000_000, "mixed nodes cannot talk");
    assert!(transfer(&n2, &n1) > 1_000_000);
    let after = packets(&n1.ns, "weftvx");
    assert!(
        after.0 - before.0 > 1000 && after.1 - before.1 > 1000,
        "node1's device carried {before:?} -> {after:?}"
    );
}
