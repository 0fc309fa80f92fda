//! The fast path's decisions, packet by packet, run in the kernel with
//! `BPF_PROG_TEST_RUN`: which packets go fast (TC_ACT_REDIRECT) and which
//! take the stack (TC_ACT_OK), and what the programs write. Kernel tier:
//! needs root (loading programs).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use weft_bpf::{FastPath, LocalPod, Remote};

const STACK: u32 = 0;
const FAST: u32 = 7; // TC_ACT_REDIRECT

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = 0x12;
const FIN_ACK: u8 = 0x11;

const OPEN_POD: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
const OPEN_VETH: u32 = 42;
const POLICED_POD: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 3);
const POLICED_VETH: u32 = 43;
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 2);
const POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const HOST_MAC: [u8; 6] = [0xee; 6];

struct Pkt {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    ttl: u8,
    proto: u8,
    frag: u16,
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Pkt {
    Pkt {
        src,
        dst,
        sport,
        dport,
        flags,
        ttl: 64,
        proto: 6,
        frag: 0x4000, // DF
    }
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Pkt {
    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; 54];
        b[0..6].copy_from_slice(&HOST_MAC);
        b[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
        b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut b[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[6..8].copy_from_slice(&self.frag.to_be_bytes());
        ip[8] = self.ttl;
        ip[9] = self.proto;
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let t = &mut b[34..54];
        t[0..2].copy_from_slice(&self.sport.to_be_bytes());
        t[2..4].copy_from_slice(&self.dport.to_be_bytes());
        t[12] = 0x50;
        t[13] = self.flags;
        b
    }
}

fn fast_path() -> FastPath {
    let fp = FastPath::new().unwrap_or_else(|e| panic!("{e}"));
    let pod = |host_ifindex, open| LocalPod {
        host_ifindex,
        pod_mac: POD_MAC,
        host_mac: HOST_MAC,
        open,
    };
    let local = BTreeMap::from([
        (OPEN_POD.into(), pod(OPEN_VETH, true)),
        (POLICED_POD.into(), pod(POLICED_VETH, false)),
    ]);
    fp.sync_local(&local).unwrap();
    fp.sync_remote(&BTreeMap::from([(
        "10.1.2.0/24".parse().unwrap(),
        Remote::Route { ifindex: 7 },
    )]))
    .unwrap();
    fp
}

fn from_pod(fp: &FastPath, p: &Pkt, ingress: u32) -> (u32, Vec<u8>) {
    fp.from_pod().test_run(&p.bytes(), ingress).unwrap()
}

fn to_pod(fp: &FastPath, p: &Pkt) -> (u32, Vec<u8>) {
    // Arrives on the uplink (any index but a pod veth's).
    fp.to_pod().test_run(&p.bytes(), 2).unwrap()
}

#[test]
fn a_flow_goes_fast_from_its_syn_both_ways_and_a_stale_syn_ack_takes_the_stack() {
    if !weft_testkit::privileged(
        "a_flow_goes_fast_from_its_syn_both_ways_and_a_stale_syn_ack_takes_the_stack",
    ) {
        return;
    }
    let fp = fast_path();
    let out = |sport, flags| tcp(OPEN_POD, sport, REMOTE_POD, 80, flags);
    let back = |dport, flags| tcp(REMOTE_POD, 80, OPEN_POD, dport, flags);

    // Before any SYN: a mid-stream packet takes the stack.
    assert_eq!(from_pod(&fp, &out(1000, ACK), OPEN_VETH).0, STACK);
    // The SYN opens the flow; the TTL drops by one with a valid checksum.
    let (verdict, data) = from_pod(&fp, &out(1000, SYN), OPEN_VETH);
    assert_eq!(verdict, FAST);
    assert_eq!(data[22], 63, "TTL");
    assert_eq!(checksum(&data[14..34]), 0, "IPv4 header checksum");
    assert_eq!(fp.flow_count().unwrap(), 1);
    // The reply's SYN-ACK establishes it; to_pod writes the pod's MACs.
    let (verdict, data) = to_pod(&fp, &back(1000, SYN_ACK));
    assert_eq!(verdict, FAST);
    assert_eq!(&data[0..6], &POD_MAC);
    assert_eq!(&data[6..12], &HOST_MAC);
    assert_eq!(checksum(&data[14..34]), 0);
    // Then everything of the flow, both ways, to the end.
    assert_eq!(from_pod(&fp, &out(1000, ACK), OPEN_VETH).0, FAST);
    assert_eq!(to_pod(&fp, &back(1000, ACK)).0, FAST);
    assert_eq!(from_pod(&fp, &out(1000, FIN_ACK), OPEN_VETH).0, FAST);
    assert_eq!(to_pod(&fp, &back(1000, FIN_ACK)).0, FAST);

    // A SYN-ACK for an established flow: the reply of another connection
    // on the same ports (a Service this node DNATed). It takes the stack,
    // and so does the rest of that connection.
    assert_eq!(to_pod(&fp, &back(1000, SYN_ACK)).0, STACK);
    assert_eq!(fp.flow_count().unwrap(), 0);
    assert_eq!(from_pod(&fp, &out(1000, ACK), OPEN_VETH).0, STACK);
    assert_eq!(to_pod(&fp, &back(1000, ACK)).0, STACK);

    // A remote pod's SYN opens a flow from the other side.
    assert_eq!(to_pod(&fp, &back(2000, SYN)).0, FAST);
    assert_eq!(from_pod(&fp, &out(2000, SYN_ACK), OPEN_VETH).0, FAST);
    assert_eq!(to_pod(&fp, &back(2000, ACK)).0, FAST);
}

#[test]
fn everything_else_takes_the_stack() {
    if !weft_testkit::privileged("everything_else_takes_the_stack") {
        return;
    }
    let fp = fast_path();
    let syn = |src, dst| tcp(src, 1000, dst, 80, SYN);
    // A source address that is not the one given to the veth it came from.
    assert_eq!(
        from_pod(&fp, &syn(OPEN_POD, REMOTE_POD), POLICED_VETH).0,
        STACK
    );
    // A pod under a policy, either way.
    assert_eq!(
        from_pod(&fp, &syn(POLICED_POD, REMOTE_POD), POLICED_VETH).0,
        STACK
    );
    assert_eq!(to_pod(&fp, &syn(REMOTE_POD, POLICED_POD)).0, STACK);
    // Not a remote pod (a ClusterIP, the internet), not from one (a node).
    assert_eq!(
        from_pod(&fp, &syn(OPEN_POD, Ipv4Addr::new(10, 96, 0, 1)), OPEN_VETH).0,
        STACK
    );
    assert_eq!(
        to_pod(&fp, &syn(Ipv4Addr::new(172, 30, 0, 12), OPEN_POD)).0,
        STACK
    );
    // An unknown local address.
    assert_eq!(
        to_pod(&fp, &syn(REMOTE_POD, Ipv4Addr::new(10, 1, 1, 9))).0,
        STACK
    );
    // UDP, a fragment, a TTL that would expire.
    let mut p = syn(OPEN_POD, REMOTE_POD);
    p.proto = 17;
    assert_eq!(from_pod(&fp, &p, OPEN_VETH).0, STACK);
    let mut p = syn(OPEN_POD, REMOTE_POD);
    p.frag = 0x2000; // more fragments
    assert_eq!(from_pod(&fp, &p, OPEN_VETH).0, STACK);
    let mut p = syn(OPEN_POD, REMOTE_POD);
    p.ttl = 1;
    assert_eq!(from_pod(&fp, &p, OPEN_VETH).0, STACK);
    assert_eq!(fp.flow_count().unwrap(), 0, "no flow was admitted");
}

/// For a VXLAN peer, `from_pod` encapsulates itself: the outer IPv4, UDP
/// and VXLAN headers and the inner Ethernet header the peer's VXLAN device
/// expects, with lengths and checksum filled in.
#[test]
fn vxlan_peers_get_the_packet_encapsulated() {
    if !weft_testkit::privileged("vxlan_peers_get_the_packet_encapsulated") {
        return;
    }
    let fp = fast_path();
    let encap = weft_bpf::VxlanEncap {
        underlay_ifindex: 3,
        local: Ipv4Addr::new(172, 30, 0, 11),
        peer: Ipv4Addr::new(172, 30, 0, 12),
        local_mac: [0x02, 0xaa, 0, 0, 0, 1],
        peer_mac: [0x02, 0xbb, 0, 0, 0, 2],
        vni: 0x123456,
        port: 8472,
    };
    fp.sync_remote(&BTreeMap::from([(
        "10.1.2.0/24".parse().unwrap(),
        Remote::Vxlan(encap),
    )]))
    .unwrap();
    let syn = tcp(OPEN_POD, 1000, REMOTE_POD, 80, SYN).bytes();
    let (verdict, out) = fp.from_pod().test_run(&syn, OPEN_VETH).unwrap();
    assert_eq!(verdict, FAST);
    assert_eq!(out.len(), syn.len() + 50);
    assert_eq!(&out[12..14], &[0x08, 0x00], "outer EtherType");
    let outer = &out[14..34];
    assert_eq!(outer[0], 0x45);
    assert_eq!(
        u16::from_be_bytes([outer[2], outer[3]]),
        (out.len() - 14) as u16
    );
    assert_eq!(outer[9], 17, "UDP");
    assert_eq!(&outer[12..16], &[172, 30, 0, 11]);
    assert_eq!(&outer[16..20], &[172, 30, 0, 12]);
    assert_eq!(checksum(outer), 0, "outer IPv4 checksum");
    let udp = &out[34..42];
    assert!(u16::from_be_bytes([udp[0], udp[1]]) >= 49152, "source port");
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 8472);
    assert_eq!(
        u16::from_be_bytes([udp[4], udp[5]]),
        (out.len() - 34) as u16
    );
    assert_eq!(&out[42..50], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0], "VXLAN");
    assert_eq!(&out[50..56], &[0x02, 0xbb, 0, 0, 0, 2], "inner destination");
    assert_eq!(&out[56..62], &[0x02, 0xaa, 0, 0, 0, 1], "inner source");
    assert_eq!(&out[62..64], &[0x08, 0x00]);
    // The inner packet follows, routed (TTL one less, checksum valid).
    assert_eq!(
        &out[64..],
        &{
            let mut inner = syn[14..].to_vec();
            inner[8] = 63;
            let c = {
                inner[10] = 0;
                inner[11] = 0;
                checksum(&inner[..20])
            };
            inner[10..12].copy_from_slice(&c.to_be_bytes());
            inner
        }[..]
    );
}

/// Two nodes' fast paths facing each other over VXLAN: what one node's
/// `from_pod` encapsulates, the other's `to_pod` decapsulates on the uplink
/// and hands to its pod — only when every outer field is what the inner
/// source's node sends; anything else is left to the stack (and its VXLAN
/// device).
#[test]
fn vxlan_packets_are_decapsulated_when_they_come_from_the_right_peer() {
    if !weft_testkit::privileged(
        "vxlan_packets_are_decapsulated_when_they_come_from_the_right_peer",
    ) {
        return;
    }
    const NODE1: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 11);
    const NODE2: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 12);
    const MAC1: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
    const MAC2: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];
    const REMOTE_VETH: u32 = 52;
    let encap = |local, peer, local_mac, peer_mac| {
        Remote::Vxlan(weft_bpf::VxlanEncap {
            underlay_ifindex: 3,
            local,
            peer,
            local_mac,
            peer_mac,
            vni: 1,
            port: 8472,
        })
    };
    // Node 1: OPEN_POD (10.1.1.0/24); node 2: REMOTE_POD (10.1.2.0/24).
    let node1 = fast_path();
    node1
        .sync_remote(&BTreeMap::from([(
            "10.1.2.0/24".parse().unwrap(),
            encap(NODE1, NODE2, MAC1, MAC2),
        )]))
        .unwrap();
    let node2 = FastPath::new().unwrap();
    let pod = |host_ifindex, open| LocalPod {
        host_ifindex,
        pod_mac: POD_MAC,
        host_mac: HOST_MAC,
        open,
    };
    node2
        .sync_local(&BTreeMap::from([
            (REMOTE_POD.into(), pod(REMOTE_VETH, true)),
            (
                Ipv4Addr::new(10, 1, 2, 3).into(),
                pod(REMOTE_VETH + 1, false),
            ),
        ]))
        .unwrap();
    node2
        .sync_remote(&BTreeMap::from([(
            "10.1.1.0/24".parse().unwrap(),
            encap(NODE2, NODE1, MAC2, MAC1),
        )]))
        .unwrap();
    // On the wire: the frame is for the uplink's MAC (the test device's is
    // all zeros).
    let wire = |mut frame: Vec<u8>| {
        frame[0..6].fill(0);
        frame
    };
    let encapsulated = |fp: &FastPath, p: &Pkt, veth| {
        let (verdict, out) = fp.from_pod().test_run(&p.bytes(), veth).unwrap();
        assert_eq!(verdict, FAST);
        wire(out)
    };
    let syn = tcp(OPEN_POD, 1000, REMOTE_POD, 80, SYN);
    let packet = encapsulated(&node1, &syn, OPEN_VETH);

    // Not decapsulated when any outer field is off.
    let altered = |at: usize, byte: u8| {
        let mut p = packet.clone();
        p[at] = byte;
        p
    };
    for (what, p) in [
        ("another VNI", altered(48, 2)),
        ("another VTEP's source", altered(29, 99)),
        ("another destination", altered(33, 99)),
        ("another UDP port", altered(37, 0x19)),
        ("a UDP checksum", altered(41, 1)),
        ("VXLAN extension flags", altered(42, 0x88)),
        ("another inner MAC", altered(55, 9)),
        ("a frame for another host", altered(0, 0x02)),
    ] {
        let (verdict, _) = node2.to_pod().test_run(&p, 2).unwrap();
        assert_eq!(verdict, STACK, "{what} was decapsulated");
    }
    // A pod under a policy keeps the stack, VXLAN or not.
    let policed = encapsulated(
        &node1,
        &tcp(OPEN_POD, 1001, Ipv4Addr::new(10, 1, 2, 3), 80, SYN),
        OPEN_VETH,
    );
    assert_eq!(node2.to_pod().test_run(&policed, 2).unwrap().0, STACK);
    assert_eq!(node2.flow_count().unwrap(), 0, "no flow was admitted");

    // The real thing: decapsulated, routed (TTL 64 → 63 → 62), delivered.
    let (verdict, out) = node2.to_pod().test_run(&packet, 2).unwrap();
    assert_eq!(verdict, FAST);
    let original = syn.bytes();
    assert_eq!(out.len(), original.len());
    assert_eq!(&out[0..6], &POD_MAC);
    assert_eq!(&out[6..12], &HOST_MAC);
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    assert_eq!(out[22], 62, "TTL");
    assert_eq!(checksum(&out[14..34]), 0, "IPv4 header checksum");
    assert_eq!(&out[26..], &original[26..], "addresses and TCP header");
    assert_eq!(node2.flow_count().unwrap(), 1);

    // The reply comes back the same way and establishes the flow on both.
    let syn_ack = encapsulated(
        &node2,
        &tcp(REMOTE_POD, 80, OPEN_POD, 1000, SYN_ACK),
        REMOTE_VETH,
    );
    assert_eq!(node1.to_pod().test_run(&syn_ack, 2).unwrap().0, FAST);
    let ack = encapsulated(&node1, &tcp(OPEN_POD, 1000, REMOTE_POD, 80, ACK), OPEN_VETH);
    assert_eq!(node2.to_pod().test_run(&ack, 2).unwrap().0, FAST);
}

const OPEN_POD6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 1, 0, 0, 0, 0, 2);
const REMOTE_POD6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 2, 0, 0, 0, 0, 2);

/// A TCP segment over IPv6 (no extension headers) in an Ethernet frame.
fn tcp6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut b = vec![0u8; 74];
    b[0..6].copy_from_slice(&HOST_MAC);
    b[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
    b[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut b[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&20u16.to_be_bytes());
    ip[6] = 6; // TCP
    ip[7] = 64; // hop limit
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let t = &mut b[54..74];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    b
}

/// A fast path with an open IPv6 pod behind `OPEN_VETH` and the remote pod
/// CIDR reached by `remote`.
fn fast_path6(remote: Remote) -> FastPath {
    let fp = FastPath::new().unwrap();
    let pod = LocalPod {
        host_ifindex: OPEN_VETH,
        pod_mac: POD_MAC,
        host_mac: HOST_MAC,
        open: true,
    };
    fp.sync_local(&BTreeMap::from([(OPEN_POD6.into(), pod)]))
        .unwrap();
    fp.sync_remote(&BTreeMap::from([(
        "fd00:1:2::/64".parse().unwrap(),
        remote,
    )]))
    .unwrap();
    fp
}

#[test]
fn ipv6_flows_go_fast_from_their_syn_and_everything_else_takes_the_stack() {
    if !weft_testkit::privileged(
        "ipv6_flows_go_fast_from_their_syn_and_everything_else_takes_the_stack",
    ) {
        return;
    }
    let fp = fast_path6(Remote::Route { ifindex: 7 });
    let out = |flags| tcp6(OPEN_POD6, 1000, REMOTE_POD6, 80, flags);
    let back = |flags| tcp6(REMOTE_POD6, 80, OPEN_POD6, 1000, flags);
    let from_pod = |p: &[u8], veth| fp.from_pod().test_run(p, veth).unwrap();
    let to_pod = |p: &[u8]| fp.to_pod().test_run(p, 2).unwrap();

    // Nothing fast before a SYN, and nothing that is not plain TCP.
    assert_eq!(from_pod(&out(ACK), OPEN_VETH).0, STACK);
    let mut udp = out(SYN);
    udp[20] = 17;
    assert_eq!(from_pod(&udp, OPEN_VETH).0, STACK, "UDP");
    let mut hop_by_hop = out(SYN);
    hop_by_hop[20] = 0;
    assert_eq!(
        from_pod(&hop_by_hop, OPEN_VETH).0,
        STACK,
        "extension header"
    );
    let mut expiring = out(SYN);
    expiring[21] = 1;
    assert_eq!(from_pod(&expiring, OPEN_VETH).0, STACK, "hop limit 1");
    assert_eq!(from_pod(&out(SYN), POLICED_VETH).0, STACK, "spoofed source");
    assert_eq!(fp.flow_count().unwrap(), 0);

    // The SYN opens the flow (hop limit one less), the SYN-ACK establishes
    // it with the pod's MACs written, then both ways go fast.
    let (verdict, data) = from_pod(&out(SYN), OPEN_VETH);
    assert_eq!(verdict, FAST);
    assert_eq!(data[21], 63, "hop limit");
    assert_eq!(&data[22..], &out(SYN)[22..]);
    let (verdict, data) = to_pod(&back(SYN_ACK));
    assert_eq!(verdict, FAST);
    assert_eq!(&data[0..6], &POD_MAC);
    assert_eq!(&data[6..12], &HOST_MAC);
    assert_eq!(data[21], 63);
    assert_eq!(from_pod(&out(ACK), OPEN_VETH).0, FAST);
    assert_eq!(to_pod(&back(FIN_ACK)).0, FAST);
    // A stale SYN-ACK takes the stack and ends the flow's fast path.
    assert_eq!(to_pod(&back(SYN_ACK)).0, STACK);
    assert_eq!(from_pod(&out(ACK), OPEN_VETH).0, STACK);
    assert_eq!(fp.flow_count().unwrap(), 0);
}

/// IPv6 pods over an IPv4 VXLAN underlay: one node's `from_pod`
/// encapsulates with an IPv6 inner frame, the other's `to_pod`
/// decapsulates it into its pod.
#[test]
fn ipv6_pods_cross_vxlan_both_ways() {
    if !weft_testkit::privileged("ipv6_pods_cross_vxlan_both_ways") {
        return;
    }
    let encap = |local: u8, peer: u8| {
        Remote::Vxlan(weft_bpf::VxlanEncap {
            underlay_ifindex: 3,
            local: Ipv4Addr::new(172, 30, 0, local),
            peer: Ipv4Addr::new(172, 30, 0, peer),
            local_mac: [0x02, 0xaa, 0, 0, 0, local],
            peer_mac: [0x02, 0xaa, 0, 0, 0, peer],
            vni: 1,
            port: 8472,
        })
    };
    let node1 = fast_path6(encap(11, 12));
    let node2 = FastPath::new().unwrap();
    let pod = LocalPod {
        host_ifindex: 52,
        pod_mac: POD_MAC,
        host_mac: HOST_MAC,
        open: true,
    };
    node2
        .sync_local(&BTreeMap::from([(REMOTE_POD6.into(), pod)]))
        .unwrap();
    node2
        .sync_remote(&BTreeMap::from([(
            "fd00:1:1::/64".parse().unwrap(),
            encap(12, 11),
        )]))
        .unwrap();

    let syn = tcp6(OPEN_POD6, 1000, REMOTE_POD6, 80, SYN);
    let (verdict, mut packet) = node1.from_pod().test_run(&syn, OPEN_VETH).unwrap();
    assert_eq!(verdict, FAST);
    assert_eq!(packet.len(), syn.len() + 50);
    assert_eq!(&packet[12..14], &[0x08, 0x00], "outer EtherType");
    assert_eq!(checksum(&packet[14..34]), 0, "outer IPv4 checksum");
    assert_eq!(&packet[62..64], &[0x86, 0xdd], "inner EtherType");
    assert_eq!(packet[64 + 7], 63, "inner hop limit");
    assert_eq!(&packet[64 + 8..], &syn[22..]);

    packet[0..6].fill(0); // for the test device's MAC: this host's frame
    let (verdict, out) = node2.to_pod().test_run(&packet, 2).unwrap();
    assert_eq!(verdict, FAST);
    assert_eq!(out.len(), syn.len());
    assert_eq!(&out[0..6], &POD_MAC);
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    assert_eq!(out[21], 62, "hop limit after two routers");
    assert_eq!(&out[22..], &syn[22..]);

    // The reply establishes the flow on node1.
    let syn_ack = tcp6(REMOTE_POD6, 80, OPEN_POD6, 1000, SYN_ACK);
    let (verdict, mut reply) = node2.from_pod().test_run(&syn_ack, 52).unwrap();
    assert_eq!(verdict, FAST);
    reply[0..6].fill(0);
    assert_eq!(node1.to_pod().test_run(&reply, 2).unwrap().0, FAST);
    assert_eq!(node1.flow_count().unwrap(), 1);
}
