//! The pod fast path: two tc programs that carry TCP between a pod on this
//! node and a pod on another node past the node's IP stack, over IPv4 and
//! IPv6 (each family has its own maps; the VXLAN underlay is IPv4 and
//! carries either).
//!
//! - `from_pod`, on the ingress of each pod's host-side veth, sends the
//!   pod's packets for a remote pod straight out of the link its route uses
//!   (`bpf_redirect_neigh`: the kernel fills in the next hop's MAC); for a
//!   VXLAN peer over an IPv4 underlay it encapsulates the packet itself (outer IPv4,
//!   UDP, VXLAN and inner Ethernet headers from a per-peer template,
//!   `bpf_skb_adjust_room` marking it UDP-tunnelled so GSO segments it as
//!   the VXLAN device's own) and sends it out of the underlay to the peer,
//!   skipping the VXLAN device and the outer packet's trip through this
//!   node's stack.
//! - `to_pod`, on the ingress of the node's uplink (host-gw) or VXLAN
//!   device, hands packets for a local pod straight to the pod's side of its
//!   veth (`bpf_redirect_peer`: no backlog queue, no second stack pass). On
//!   the uplink it also decapsulates VXLAN itself (`bpf_skb_adjust_room`
//!   shrinking at the MAC layer with the inner MSS kept), sparing the outer
//!   packet the node's IP input, conntrack, UDP socket and VXLAN device —
//!   but only a packet exactly as weft's VXLAN devices or programs send it
//!   (IPv4 without options, no fragment, for this host, no UDP checksum, no
//!   VXLAN extension flags) and whose outer source, destination, port, VNI
//!   and inner destination MAC are those of the template for the inner
//!   source's node: what this node's VXLAN device would accept from that
//!   peer. Anything else, or a helper refusing, leaves the packet to the
//!   stack and the VXLAN device, whose `to_pod` then sees it decapsulated —
//!   the same flow map decides either way, so nodes with and without the
//!   fast path interoperate.
//!
//! A decapsulated GSO packet keeps the UDP-tunnel GSO type and
//! `skb->encapsulation` (BPF cannot clear them; Calico's eBPF dataplane
//! decapsulates the same way). It is delivered to a local pod, whose TCP
//! ignores both; a checksum a NIC verified for the outer packet is reset,
//! so the pod's stack verifies the inner one itself. A pod that routes
//! such a packet on (a gateway or VPN pod) hands its stack a GSO packet
//! marked as tunnelled without tunnel headers: software segmentation
//! treats it as the TCP it is, but a NIC's tunnel offload might not —
//! the one case where running such a pod with `--fast-path off` is the
//! safe choice (docs/benchmarks.md, "Fast path limits").
//!
//! Both decrement the TTL or hop limit as a router does. Everything else —
//! other protocols, IPv6 extension headers, fragments, IP options,
//! Services (ClusterIPs and node
//! ports are never pod addresses), masquerade, pods under any
//! NetworkPolicy — takes the kernel's path, nftables and conntrack included.
//!
//! **Which flows, and why that is safe.** A node must see all of a flow's
//! packets on its stack or none of them: conntrack that sees one direction
//! only marks the other direction invalid (TCP window tracking), and replies
//! of connections the node NATed must be un-NATed by it. So only flows
//! whose *first* packet (a pure SYN) passed through a fast-path program are
//! fast-pathed, both directions, and remembered in the `flows` map
//! (an LRU keyed by local pod, remote pod and ports):
//!
//! - a pure SYN between an open local pod and a remote pod address records
//!   the flow (state SYN) and goes fast;
//! - a SYN-ACK goes fast only if its flow is in state SYN (it becomes
//!   ESTABLISHED); any other SYN-ACK deletes a stale entry and takes the
//!   stack — so the reply of a Service connection this node DNATed, whose
//!   post-NAT ports may repeat an old direct flow's, is always un-NATed;
//! - every other packet goes fast only if its flow is ESTABLISHED.
//!
//! Flows that began on the stack (before the programs were attached, or
//! while the pod was under a policy) stay there. A local pod is *open* when
//! no NetworkPolicy selects it in either direction: it accepts and sends
//! anything, so skipping the policy chains changes nothing. When a policy
//! comes to select it, its flows fall back to the stack mid-stream, where
//! conntrack picks them up as new connections and the policy decides.
//! `from_pod` also checks that the source address is the one the plugin gave
//! the veth it arrived on (the stack's anti-spoofing rule).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::asm::{Alu, Asm, AsmError, Cond, FP, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, Size};
use crate::sys::{LoadError, Map, MapKind, PROG_SCHED_CLS, Program};

/// Helper numbers (`enum bpf_func_id`).
const MAP_LOOKUP: i32 = 1;
const MAP_UPDATE: i32 = 2;
const MAP_DELETE: i32 = 3;
const SKB_STORE_BYTES: i32 = 9;
const L3_CSUM_REPLACE: i32 = 10;
const GET_HASH_RECALC: i32 = 34;
const SKB_ADJUST_ROOM: i32 = 50;
const REDIRECT_NEIGH: i32 = 152;
const REDIRECT_PEER: i32 = 155;

/// `struct __sk_buff` offsets.
const SKB_LEN: i16 = 0;
const SKB_PKT_TYPE: i16 = 4;
const SKB_INGRESS_IFINDEX: i16 = 36;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

/// Packet offsets: Ethernet, then IPv4 without options, then TCP.
const ETH_PROTO: i16 = 12;
const IP_VER_IHL: i16 = 14;
const IP_FRAG: i16 = 20;
const IP_TTL: i16 = 22;
const IP_PROTO: i16 = 23;
const IP_CSUM: i32 = 24;
const IP_SRC: i16 = 26;
const IP_DST: i16 = 30;
const TCP_SPORT: i16 = 34;
const TCP_FLAGS: i16 = 47;
const HEADERS: i32 = 54;
const ETH_LEN: i32 = 14;
/// EtherTypes as a little-endian load of the header reads them.
const ETH_IPV4: i32 = 0x0008;
const ETH_IPV6: i32 = 0xdd86;

/// Packet offsets: Ethernet, then IPv6 without extension headers, then TCP.
const IP6_VERSION: i16 = 14;
const IP6_NEXT: i16 = 20;
const IP6_HOP: i16 = 21;
const IP6_SRC: i16 = 22;
const IP6_DST: i16 = 38;
const TCP6_SPORT: i16 = 54;
const TCP6_FLAGS: i16 = 67;
const HEADERS6: i32 = 74;

/// Outer packet offsets of VXLAN over IPv4 (the inner frame starts at
/// `ENCAP_LEN`).
const UDP_DPORT: i16 = 36;
const UDP_CSUM: i16 = 40;
const VXLAN_FLAGS: i16 = 42;
const VXLAN_VNI: i16 = 46;
const INNER_DST_MAC: i16 = 50;

/// Stack slots (offsets from the frame pointer).
const ST_IFINDEX: i16 = -4;
const ST_LPM_KEY: i16 = -16;
const ST_FLOW_KEY: i16 = -32;
const ST_FLOW_VAL: i16 = -40;
const ST_L2: i16 = -56;
const ST_REMOTE: i16 = -64;
const ST_TOT_LEN: i16 = -72;
const ST_UDP_LEN: i16 = -70;
const ST_SPORT: i16 = -68;
/// `to_pod`: 1 when the packet arrived VXLAN-encapsulated.
const ST_DECAP: i16 = -76;
/// `to_pod`: the outer fields checked against the sender's template —
/// source, destination, VNI word, UDP port, then the inner destination MAC.
const ST_OUTER: i16 = -104;
/// The IPv6 flow key (36 bytes) and remote CIDR key (20 bytes).
const ST6_FLOW_KEY: i16 = -152;
const ST6_LPM_KEY: i16 = -176;

/// VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet
/// (14), inserted after the outer Ethernet header.
const ENCAP_LEN: usize = 50;
/// `bpf_skb_adjust_room` at the MAC layer, keeping the inner MSS, marking
/// the packet as UDP-tunnelled IPv4 with an inner Ethernet header (so GSO
/// segments it as the VXLAN device's own packets).
const ADJ_ROOM_MAC: i32 = 1;
const ENCAP_FLAGS: u64 = 1 // BPF_F_ADJ_ROOM_FIXED_GSO
    | (1 << 1) // BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    | (1 << 4) // BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | (1 << 6) // BPF_F_ADJ_ROOM_ENCAP_L2_ETH
    | (14 << 56); // BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN)
/// The longest frame `from_pod` encapsulates: its outer IPv4 packet
/// (the frame less the Ethernet header, plus the encapsulation) must not
/// exceed 65,535 bytes.
const MAX_ENCAP_INNER: i32 = 0xffff + ETH_LEN - ENCAP_LEN as i32;
/// `bpf_skb_adjust_room` removing the outer headers again: the inner MSS
/// stays what the sender's GSO cut to.
const DECAP_FLAGS: u64 = 1; // BPF_F_ADJ_ROOM_FIXED_GSO
/// The same for an IPv6 inner packet: `skb->protocol` becomes IPv6.
const DECAP_FLAGS6: u64 = DECAP_FLAGS | (1 << 8); // BPF_F_ADJ_ROOM_DECAP_L3_IPV6
/// Remote value: ifindex, kind, pad, the 50-byte encapsulation template,
/// pad.
const REMOTE_VALUE: usize = 72;
/// Where the template starts in the remote value, and the fields of it
/// `to_pod` checks a decapsulated packet against (this node's address, the
/// peer's, the UDP port, the VNI word, this node's VXLAN MAC).
const TEMPLATE: i16 = 16;
const T_LOCAL: i16 = TEMPLATE + 12;
const T_PEER: i16 = TEMPLATE + 16;
const T_PORT: i16 = TEMPLATE + 22;
const T_VNI: i16 = TEMPLATE + 32;
const T_LOCAL_MAC: i16 = TEMPLATE + 42;
const REMOTE_ROUTE: u32 = 0;
const REMOTE_VXLAN: u32 = 1;

const FLOW_SYN: i32 = 1;
const FLOW_ESTABLISHED: i32 = 2;
const TCP_SYN: i32 = 0x02;
const TCP_SYN_ACK: i32 = 0x12;

/// Map sizes: local pods per node, remote pod CIDRs (one per node), and
/// fast-pathed flows per node (least recently used ones make room; an
/// evicted flow's later packets take the stack).
const MAX_LOCAL_PODS: u32 = 16_384;
const MAX_REMOTE_CIDRS: u32 = 16_384;
const MAX_FLOWS: u32 = 65_536;

/// The local pod value: host veth ifindex, flags (bit 0: open), and the
/// Ethernet addresses `to_pod` writes (pod MAC, then the host end's).
const LOCAL_VALUE: usize = 20;
const FLAG_OPEN: u32 = 1;

/// The kernel-side license string: the helpers used need a GPL-compatible
/// program.
const LICENSE: &str = "Dual MIT/GPL";

/// Why the fast path could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program did not assemble (a bug in this file).
    #[error("assemble {0}: {1}")]
    Asm(&'static str, AsmError),
    /// The kernel refused a program.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A map operation failed.
    #[error("{op}: {source}")]
    Map {
        /// What was being done.
        op: String,
        /// The system's error.
        source: std::io::Error,
    },
}

fn map_err(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let op = op.into();
    move |source| Error::Map { op, source }
}

/// A pod on this node, as `to_pod` delivers to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalPod {
    /// The host end of the pod's veth.
    pub host_ifindex: u32,
    /// The pod interface's MAC.
    pub pod_mac: [u8; 6],
    /// The host end's MAC (what the pod sees as its gateway).
    pub host_mac: [u8; 6],
    /// No NetworkPolicy selects the pod, in either direction.
    pub open: bool,
}

impl LocalPod {
    fn value(&self) -> [u8; LOCAL_VALUE] {
        let mut v = [0u8; LOCAL_VALUE];
        v[0..4].copy_from_slice(&self.host_ifindex.to_ne_bytes());
        let flags = if self.open { FLAG_OPEN } else { 0 };
        v[4..8].copy_from_slice(&flags.to_ne_bytes());
        v[8..14].copy_from_slice(&self.pod_mac);
        v[14..20].copy_from_slice(&self.host_mac);
        v
    }
}

/// How packets for a remote pod CIDR leave this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    /// Out of `ifindex` by the route's next hop (host-gw, or the VXLAN
    /// device when it encapsulates).
    Route {
        /// The route's output device.
        ifindex: u32,
    },
    /// VXLAN over IPv4, encapsulated by the program itself and sent out of
    /// the underlay to the peer's address (the peer decapsulates with its
    /// VXLAN device as usual).
    Vxlan(VxlanEncap),
}

/// What `from_pod` writes in front of a packet for a VXLAN peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VxlanEncap {
    /// The underlay device.
    pub underlay_ifindex: u32,
    /// This node's underlay address (the VTEP source).
    pub local: Ipv4Addr,
    /// The peer's underlay address.
    pub peer: Ipv4Addr,
    /// This node's VXLAN device MAC (inner source).
    pub local_mac: [u8; 6],
    /// The peer's VXLAN device MAC (inner destination).
    pub peer_mac: [u8; 6],
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
}

impl Remote {
    fn value(&self) -> [u8; REMOTE_VALUE] {
        let mut v = [0u8; REMOTE_VALUE];
        match self {
            Remote::Route { ifindex } => {
                v[0..4].copy_from_slice(&ifindex.to_ne_bytes());
                v[4..8].copy_from_slice(&REMOTE_ROUTE.to_ne_bytes());
            }
            Remote::Vxlan(e) => {
                v[0..4].copy_from_slice(&e.underlay_ifindex.to_ne_bytes());
                v[4..8].copy_from_slice(&REMOTE_VXLAN.to_ne_bytes());
                let at = TEMPLATE as usize;
                v[at..at + ENCAP_LEN].copy_from_slice(&e.template());
            }
        }
        v
    }
}

impl VxlanEncap {
    /// The outer IPv4, UDP and VXLAN headers and the inner Ethernet header.
    /// Total and UDP lengths and the UDP source port are filled in per
    /// packet; the IPv4 checksum is computed with a total length of zero
    /// (the program adds the length in), the UDP checksum is zero (allowed
    /// over IPv4; the inner TCP checksum protects the payload).
    fn template(&self) -> [u8; ENCAP_LEN] {
        let mut t = [0u8; ENCAP_LEN];
        t[0] = 0x45;
        t[8] = 64; // TTL
        t[9] = 17; // UDP
        t[12..16].copy_from_slice(&self.local.octets());
        t[16..20].copy_from_slice(&self.peer.octets());
        let sum = ipv4_checksum(&t[0..20]);
        t[10..12].copy_from_slice(&sum.to_be_bytes());
        t[22..24].copy_from_slice(&self.port.to_be_bytes());
        t[28] = 0x08; // VXLAN: a valid VNI follows
        t[32..35].copy_from_slice(&self.vni.to_be_bytes()[1..4]);
        t[36..42].copy_from_slice(&self.peer_mac);
        t[42..48].copy_from_slice(&self.local_mac);
        t[48..50].copy_from_slice(&0x0800u16.to_be_bytes());
        t
    }
}

/// The IPv4 header checksum of `header` (its checksum field zero).
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One address family's maps: local pods, remote pod CIDRs, flows.
#[derive(Debug)]
struct Maps {
    local: Map,
    remote: Map,
    flows: Map,
}

/// Key sizes of an address family's maps: local pod (its address), remote
/// CIDR (prefix length and address), flow (two addresses, two ports).
const fn key_sizes(addr: usize) -> (usize, usize, usize) {
    (addr, 4 + addr, 2 * addr + 4)
}

impl Maps {
    fn create(addr: usize, family: &str) -> Result<Maps, Error> {
        let (local, remote, flow) = key_sizes(addr);
        Ok(Maps {
            local: Map::create(MapKind::Hash, local, LOCAL_VALUE, MAX_LOCAL_PODS)
                .map_err(map_err(format!("create the {family} local pod map")))?,
            remote: Map::create(MapKind::LpmTrie, remote, REMOTE_VALUE, MAX_REMOTE_CIDRS)
                .map_err(map_err(format!("create the {family} remote CIDR map")))?,
            flows: Map::create(MapKind::LruHash, flow, 8, MAX_FLOWS)
                .map_err(map_err(format!("create the {family} flow map")))?,
        })
    }

    /// Picks this family's maps out of a program's (by kind and sizes).
    fn pick(maps: &mut Vec<(Map, u32)>, addr: usize) -> Option<Maps> {
        let (local, remote, flow) = key_sizes(addr);
        let mut take = |kind: MapKind, sizes: (usize, usize)| {
            let at = maps
                .iter()
                .position(|(m, code)| *code == kind.code() && m.sizes() == sizes)?;
            Some(maps.swap_remove(at).0)
        };
        Some(Maps {
            local: take(MapKind::Hash, (local, LOCAL_VALUE))?,
            remote: take(MapKind::LpmTrie, (remote, REMOTE_VALUE))?,
            flows: take(MapKind::LruHash, (flow, 8))?,
        })
    }

    fn family(&self, v6: bool) -> Family<'_> {
        Family {
            v6,
            local: &self.local,
            remote: &self.remote,
            flows: &self.flows,
        }
    }
}

/// The maps and programs of one node's fast path. Dropping it closes the
/// descriptors; programs attached to links keep running with their maps.
#[derive(Debug)]
pub struct FastPath {
    v4: Maps,
    v6: Maps,
    from_pod: Program,
    to_pod: Program,
}

impl FastPath {
    /// Creates the maps and loads both programs.
    pub fn new() -> Result<FastPath, Error> {
        Self::with_maps(Maps::create(4, "IPv4")?, Maps::create(16, "IPv6")?)
    }

    /// Takes over the maps of a running fast path program (by its ID, as
    /// tc reports the attached filter) and loads fresh programs over them:
    /// a restarted agent keeps the flows its predecessor fast-pathed, so
    /// none of them falls back to the stack half-way (where conntrack
    /// would refuse a first FIN or RST as invalid). `None` when the program
    /// is gone or is not one of ours. A program of a version without IPv6
    /// maps gets new, empty ones (it fast-pathed no IPv6 flow).
    pub fn adopt(prog_id: u32) -> Result<Option<FastPath>, Error> {
        let mut maps = match crate::sys::program_maps(prog_id) {
            Ok(maps) => maps,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(map_err(format!("read program {prog_id}'s maps"))(e)),
        };
        let Some(v4) = Maps::pick(&mut maps, 4) else {
            return Ok(None);
        };
        let v6 = match Maps::pick(&mut maps, 16) {
            Some(v6) => v6,
            None => Maps::create(16, "IPv6")?,
        };
        Self::with_maps(v4, v6).map(Some)
    }

    fn with_maps(v4: Maps, v6: Maps) -> Result<FastPath, Error> {
        let (f4, f6) = (v4.family(false), v6.family(true));
        let from_pod = from_pod(f4, f6).map_err(|e| Error::Asm("from_pod", e))?;
        let to_pod = to_pod(f4, f6).map_err(|e| Error::Asm("to_pod", e))?;
        let from_pod = Program::load(PROG_SCHED_CLS, "weft_from_pod", &from_pod, LICENSE)?;
        let to_pod = Program::load(PROG_SCHED_CLS, "weft_to_pod", &to_pod, LICENSE)?;
        Ok(FastPath {
            v4,
            v6,
            from_pod,
            to_pod,
        })
    }

    /// The program for the ingress of each pod's host-side veth.
    pub fn from_pod(&self) -> &Program {
        &self.from_pod
    }

    /// The program for the ingress of the uplink and the VXLAN device.
    pub fn to_pod(&self) -> &Program {
        &self.to_pod
    }

    /// Makes the local pod maps equal `want` (both families): sets what
    /// differs, removes the rest. Returns how many entries changed.
    pub fn sync_local(&self, want: &BTreeMap<IpAddr, LocalPod>) -> Result<usize, Error> {
        let entries = |v6: bool| {
            want.iter()
                .filter(|(ip, _)| ip.is_ipv6() == v6)
                .map(|(ip, pod)| (addr_bytes(*ip), pod.value().to_vec()))
                .collect()
        };
        Ok(sync_map(&self.v4.local, entries(false), "local pod")?
            + sync_map(&self.v6.local, entries(true), "local pod")?)
    }

    /// Makes the remote CIDR maps equal `want` (CIDR → how its packets
    /// leave, both families). Returns how many entries changed.
    pub fn sync_remote(&self, want: &BTreeMap<IpNet, Remote>) -> Result<usize, Error> {
        let entries = |v6: bool| {
            want.iter()
                .filter(|(net, _)| matches!(net, IpNet::V6(_)) == v6)
                .map(|(net, remote)| {
                    let mut key = u32::from(net.prefix_len()).to_ne_bytes().to_vec();
                    key.extend(addr_bytes(net.network()));
                    (key, remote.value().to_vec())
                })
                .collect()
        };
        Ok(sync_map(&self.v4.remote, entries(false), "remote CIDR")?
            + sync_map(&self.v6.remote, entries(true), "remote CIDR")?)
    }

    /// How many flows are fast-pathed, both families (for tests and
    /// diagnostics).
    pub fn flow_count(&self) -> Result<usize, Error> {
        let count = |m: &Map| Ok::<_, Error>(m.keys().map_err(map_err("list flows"))?.len());
        Ok(count(&self.v4.flows)? + count(&self.v6.flows)?)
    }
}

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    }
}

/// Makes `map` hold exactly `want` (key → value): removes other keys, sets
/// values that differ. Returns how many entries changed; `what` names the
/// entries in errors.
fn sync_map(map: &Map, want: BTreeMap<Vec<u8>, Vec<u8>>, what: &str) -> Result<usize, Error> {
    let mut changed = 0;
    for key in map
        .keys()
        .map_err(map_err(format!("list {what} entries")))?
    {
        if !want.contains_key(&key[..]) {
            map.delete(&key)
                .map_err(map_err(format!("remove {what} entry {key:02x?}")))?;
            changed += 1;
        }
    }
    for (key, value) in &want {
        let current = map
            .get(key)
            .map_err(map_err(format!("read {what} entry {key:02x?}")))?;
        if current.as_deref() != Some(&value[..]) {
            map.update(key, value)
                .map_err(map_err(format!("set {what} entry {key:02x?}")))?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// An address family's side of the programs: where its headers lie, how
/// long its addresses are, the stack slots of its keys and its maps.
#[derive(Clone, Copy)]
struct Family<'a> {
    v6: bool,
    local: &'a Map,
    remote: &'a Map,
    flows: &'a Map,
}

impl Family<'_> {
    /// Appended to the labels of this family's code (one program holds
    /// both families' code).
    fn label(&self, name: &str) -> String {
        if self.v6 {
            format!("{name}6")
        } else {
            name.to_string()
        }
    }

    fn addr_len(&self) -> i16 {
        if self.v6 { 16 } else { 4 }
    }

    fn src(&self) -> i16 {
        if self.v6 { IP6_SRC } else { IP_SRC }
    }

    fn dst(&self) -> i16 {
        if self.v6 { IP6_DST } else { IP_DST }
    }

    /// Where the TCP header starts.
    fn l4(&self) -> i16 {
        if self.v6 { TCP6_SPORT } else { TCP_SPORT }
    }

    fn headers(&self) -> i32 {
        if self.v6 { HEADERS6 } else { HEADERS }
    }

    /// The flow key: local address, remote address, local port, remote
    /// port. It starts with the local address, so it is the local pod
    /// map's key too.
    fn flow_key(&self) -> i16 {
        if self.v6 { ST6_FLOW_KEY } else { ST_FLOW_KEY }
    }

    /// The remote CIDR map's key: prefix length, then the address.
    fn lpm_key(&self) -> i16 {
        if self.v6 { ST6_LPM_KEY } else { ST_LPM_KEY }
    }
}

/// Which way a program sees the flow: its local pod is the packet's source
/// (`from_pod`) or its destination (`to_pod`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    FromPod,
    ToPod,
}

/// Checks the Ethernet frame at R2 (the packet start, or the inner frame
/// of a VXLAN packet; R3 = the packet end) is TCP over the family's IP —
/// IPv4 without options and not a fragment, IPv6 without extension
/// headers — with a TTL or hop limit above 1; leaves the TCP flags in R9.
/// Anything else jumps to `pass`.
fn parse_frame(a: &mut Asm, fam: Family) {
    a.mov(R4, R2)
        .alu_imm(Alu::Add, R4, fam.headers())
        .jump_reg(Cond::Gt, R4, R3, "pass")
        // The fields are read as they lie in memory (network order) by a
        // little-endian load: 0x0800 reads as 0x0008.
        .load(Size::H, R4, R2, ETH_PROTO);
    if fam.v6 {
        a.jump_imm(Cond::Ne, R4, ETH_IPV6, "pass")
            .load(Size::B, R4, R2, IP6_VERSION)
            .alu_imm(Alu::And, R4, 0xf0)
            .jump_imm(Cond::Ne, R4, 0x60, "pass")
            .load(Size::B, R4, R2, IP6_NEXT)
            .jump_imm(Cond::Ne, R4, 6, "pass")
            .load(Size::B, R4, R2, IP6_HOP)
            .jump_imm(Cond::Le, R4, 1, "pass")
            .load(Size::B, R9, R2, TCP6_FLAGS);
    } else {
        a.jump_imm(Cond::Ne, R4, ETH_IPV4, "pass");
        whole_ipv4(a);
        a.load(Size::B, R4, R2, IP_PROTO)
            .jump_imm(Cond::Ne, R4, 6, "pass")
            .load(Size::B, R4, R2, IP_TTL)
            .jump_imm(Cond::Le, R4, 1, "pass")
            .load(Size::B, R9, R2, TCP_FLAGS);
    }
}

/// Jumps to `pass` unless the IPv4 header after the Ethernet header at R2
/// has no options and is not a fragment.
fn whole_ipv4(a: &mut Asm) {
    a.load(Size::B, R4, R2, IP_VER_IHL)
        .jump_imm(Cond::Ne, R4, 0x45, "pass")
        // More-fragments flag and fragment offset.
        .load(Size::H, R4, R2, IP_FRAG)
        .alu_imm(Alu::And, R4, 0xff3f)
        .jump_imm(Cond::Ne, R4, 0, "pass");
}

/// Copies `len` bytes (a multiple of 4) from the packet at R2 + `from` to
/// the stack at `to`.
fn copy_in(a: &mut Asm, from: i16, to: i16, len: i16) {
    for at in (0..len).step_by(4) {
        a.load(Size::W, R4, R2, from + at)
            .store(Size::W, FP, to + at, R4);
    }
}

/// Fills in the flow key and the remote CIDR key from the frame
/// [`parse_frame`] checked.
fn keys(a: &mut Asm, fam: Family, way: Way) {
    let (local, remote) = match way {
        Way::FromPod => (fam.src(), fam.dst()),
        Way::ToPod => (fam.dst(), fam.src()),
    };
    let n = fam.addr_len();
    let key = fam.flow_key();
    copy_in(a, local, key, n);
    copy_in(a, remote, key + n, n);
    match way {
        // Source port, destination port: as they lie in the header.
        Way::FromPod => copy_in(a, fam.l4(), key + 2 * n, 4),
        Way::ToPod => {
            a.load(Size::H, R4, R2, fam.l4() + 2)
                .store(Size::H, FP, key + 2 * n, R4)
                .load(Size::H, R4, R2, fam.l4())
                .store(Size::H, FP, key + 2 * n + 2, R4);
        }
    }
    a.store_imm(Size::W, FP, fam.lpm_key(), i32::from(n) * 8);
    copy_in(a, remote, fam.lpm_key() + 4, n);
}

/// Looks up `map` with the key at `fp + key`; the value pointer (or 0) in R0.
fn lookup(a: &mut Asm, map: &Map, key: i16) {
    a.load_map(R1, map.raw_fd())
        .mov(R2, FP)
        .alu_imm(Alu::Add, R2, i32::from(key))
        .call(MAP_LOOKUP);
}

/// The flow state machine (module docs); the flow key is on the stack and
/// the TCP flags in R9. Jumps to the family's `fwd` or to `pass`.
fn flow(a: &mut Asm, fam: Family) {
    let (syn, synack, stale, fwd) = (
        fam.label("flow_syn"),
        fam.label("flow_synack"),
        fam.label("flow_stale"),
        fam.label("fwd"),
    );
    let key = i32::from(fam.flow_key());
    a.mov(R1, R9)
        .alu_imm(Alu::And, R1, TCP_SYN_ACK)
        .jump_imm(Cond::Eq, R1, TCP_SYN, &syn);
    lookup(a, fam.flows, fam.flow_key());
    a.jump_imm(Cond::Eq, R0, 0, "pass")
        .load(Size::DW, R1, R0, 0)
        .mov(R2, R9)
        .alu_imm(Alu::And, R2, TCP_SYN_ACK)
        .jump_imm(Cond::Eq, R2, TCP_SYN_ACK, &synack)
        .jump_imm(Cond::Eq, R1, FLOW_ESTABLISHED, &fwd)
        .goto("pass")
        .label(&synack)
        .jump_imm(Cond::Ne, R1, FLOW_SYN, &stale)
        .store_imm(Size::DW, R0, 0, FLOW_ESTABLISHED)
        .goto(&fwd)
        .label(&stale)
        .load_map(R1, fam.flows.raw_fd())
        .mov(R2, FP)
        .alu_imm(Alu::Add, R2, key)
        .call(MAP_DELETE)
        .goto("pass")
        .label(&syn)
        .store_imm(Size::DW, FP, ST_FLOW_VAL, FLOW_SYN)
        .load_map(R1, fam.flows.raw_fd())
        .mov(R2, FP)
        .alu_imm(Alu::Add, R2, key)
        .mov(R3, FP)
        .alu_imm(Alu::Add, R3, i32::from(ST_FLOW_VAL))
        .mov_imm(R4, 0)
        .call(MAP_UPDATE)
        .goto(&fwd);
}

/// Reloads the packet start into R2 (helpers invalidate packet pointers),
/// checking the family's headers `at` bytes past the Ethernet header are
/// there.
fn reload(a: &mut Asm, fam: Family, at: i16) {
    a.load(Size::W, R2, R6, SKB_DATA)
        .load(Size::W, R3, R6, SKB_DATA_END)
        .mov(R4, R2)
        .alu_imm(Alu::Add, R4, fam.headers() + i32::from(at))
        .jump_reg(Cond::Gt, R4, R3, "pass");
}

/// Reloads the packet (helpers invalidate packet pointers) and decrements
/// the TTL or hop limit of the IP header `at` bytes past the Ethernet
/// header in place; R2 = the packet start. For IPv4 it leaves the old and
/// new TTL/protocol words in R4/R5 for [`hop_checksum`].
fn hop(a: &mut Asm, fam: Family, at: i16) {
    reload(a, fam, at);
    if fam.v6 {
        // Above 1 (parse_frame checked); IPv6 has no header checksum.
        a.load(Size::B, R4, R2, IP6_HOP + at)
            .alu_imm(Alu::Sub, R4, 1)
            .store(Size::B, R2, IP6_HOP + at, R4);
    } else {
        a.load(Size::H, R4, R2, IP_TTL + at)
            .mov(R5, R4)
            // The TTL is the first byte: the low byte of the little-endian
            // word. It is above 1 (parse_frame checked), so no borrow.
            .alu_imm(Alu::Sub, R5, 1)
            .store(Size::H, R2, IP_TTL + at, R5);
    }
}

/// After [`hop`] on IPv4: `bpf_l3_csum_replace(skb, IP_CSUM + at, R4, R5,
/// 2)`.
fn hop_checksum(a: &mut Asm, fam: Family, at: i16) {
    if fam.v6 {
        return;
    }
    a.mov(R3, R4)
        .mov(R4, R5)
        .mov(R1, R6)
        .mov_imm(R2, IP_CSUM + i32::from(at))
        .mov_imm(R5, 2)
        .call(L3_CSUM_REPLACE);
}

fn from_pod(v4: Family, v6: Family) -> Result<Vec<crate::asm::Insn>, AsmError> {
    let mut a = Asm::new();
    a.mov(R6, R1)
        .load(Size::W, R2, R6, SKB_DATA)
        .load(Size::W, R3, R6, SKB_DATA_END);
    by_family(&mut a, v4, v6, from_pod_family);
    a.finish()
}

/// Runs `body` for the family of the Ethernet frame at R2 (R3 = the packet
/// end), then ends the program with the `pass` every check jumps to.
fn by_family<'a>(a: &mut Asm, v4: Family<'a>, v6: Family<'a>, body: fn(&mut Asm, Family<'a>)) {
    a.mov(R4, R2)
        .alu_imm(Alu::Add, R4, ETH_LEN)
        .jump_reg(Cond::Gt, R4, R3, "pass")
        .load(Size::H, R4, R2, ETH_PROTO)
        .jump_imm(Cond::Eq, R4, ETH_IPV6, "ipv6");
    body(a, v4);
    a.label("ipv6");
    body(a, v6);
    a.label("pass").mov_imm(R0, 0).exit();
}

/// `from_pod` for one family, from the packet start in R2 (R3 = its end).
fn from_pod_family(a: &mut Asm, fam: Family) {
    parse_frame(a, fam);
    keys(a, fam, Way::FromPod);
    lookup(a, fam.local, fam.flow_key());
    a.jump_imm(Cond::Eq, R0, 0, "pass")
        // The source address must be the one given to this veth.
        .load(Size::W, R1, R0, 0)
        .load(Size::W, R2, R6, SKB_INGRESS_IFINDEX)
        .jump_reg(Cond::Ne, R1, R2, "pass")
        .load(Size::W, R1, R0, 4)
        .alu_imm(Alu::And, R1, FLAG_OPEN as i32)
        .jump_imm(Cond::Eq, R1, 0, "pass");
    lookup(a, fam.remote, fam.lpm_key());
    a.jump_imm(Cond::Eq, R0, 0, "pass")
        .store(Size::DW, FP, ST_REMOTE, R0)
        .load(Size::W, R1, R0, 0)
        .store(Size::W, FP, ST_IFINDEX, R1);
    flow(a, fam);
    let route = fam.label("route");
    a.label(&fam.label("fwd"))
        .load(Size::DW, R7, FP, ST_REMOTE)
        .load(Size::W, R1, R7, 4)
        .jump_imm(Cond::Eq, R1, REMOTE_ROUTE as i32, &route);
    encapsulate(a, fam);
    a.label(&route);
    hop(a, fam, 0);
    hop_checksum(a, fam, 0);
    a.load(Size::W, R1, FP, ST_IFINDEX)
        .mov_imm(R2, 0)
        .mov_imm(R3, 0)
        .mov_imm(R4, 0)
        .call(REDIRECT_NEIGH)
        .exit();
}

/// VXLAN encapsulation by the program (R6 = context, R7 = the remote map
/// value): room for the outer headers, the template written in, the inner
/// TTL or hop limit decremented (and for IPv6 the inner EtherType set),
/// lengths, checksum and source port filled in, then out of the underlay
/// (`bpf_redirect_neigh` routing the outer packet). Exits.
fn encapsulate(a: &mut Asm, fam: Family) {
    // The outer IPv4 total length must fit its 16 bits: a BIG TCP
    // super-packet (a pod device with `gso_ipv4_max_size` above 64 KiB)
    // is left to the VXLAN device, which knows that case.
    a.load(Size::W, R1, R6, SKB_LEN)
        .jump_imm(Cond::Gt, R1, MAX_ENCAP_INNER, "pass")
        .mov(R1, R6)
        .mov_imm(R2, ENCAP_LEN as i32)
        .mov_imm(R3, ADJ_ROOM_MAC)
        .load_imm64(R4, ENCAP_FLAGS)
        .call(SKB_ADJUST_ROOM)
        // Refused (e.g. a GSO type it cannot tunnel): the stack takes the
        // packet as it came.
        .jump_imm(Cond::Ne, R0, 0, "pass")
        .mov(R1, R6)
        .mov_imm(R2, ETH_LEN)
        .mov(R3, R7)
        .alu_imm(Alu::Add, R3, i32::from(TEMPLATE))
        .mov_imm(R4, ENCAP_LEN as i32)
        .mov_imm(R5, 0)
        .call(SKB_STORE_BYTES);
    // The inner packet is routed: its TTL or hop limit drops by one.
    hop(a, fam, ENCAP_LEN as i16);
    if fam.v6 {
        // The outer frame carries IPv4 now; the template's inner EtherType
        // is IPv4's.
        a.store_imm(Size::H, R2, ETH_PROTO, ETH_IPV4).store_imm(
            Size::H,
            R2,
            ENCAP_LEN as i16 + ETH_PROTO,
            ETH_IPV6,
        );
    }
    hop_checksum(a, fam, ENCAP_LEN as i16);
    a
        // Outer total length (skb->len - Ethernet) and UDP length
        // (- outer IPv4 too), big-endian, byte by byte.
        .load(Size::W, R8, R6, SKB_LEN)
        .mov(R1, R8)
        .alu_imm(Alu::Sub, R1, ETH_LEN)
        .mov(R2, R1)
        .alu_imm(Alu::Rsh, R2, 8)
        .store(Size::B, FP, ST_TOT_LEN, R2)
        .store(Size::B, FP, ST_TOT_LEN + 1, R1)
        .mov(R1, R8)
        .alu_imm(Alu::Sub, R1, ETH_LEN + 20)
        .mov(R2, R1)
        .alu_imm(Alu::Rsh, R2, 8)
        .store(Size::B, FP, ST_UDP_LEN, R2)
        .store(Size::B, FP, ST_UDP_LEN + 1, R1)
        .mov(R1, R6)
        .mov_imm(R2, ETH_LEN + 2)
        .mov(R3, FP)
        .alu_imm(Alu::Add, R3, i32::from(ST_TOT_LEN))
        .mov_imm(R4, 2)
        .mov_imm(R5, 0)
        .call(SKB_STORE_BYTES)
        .mov(R1, R6)
        .mov_imm(R2, ETH_LEN + 24)
        .mov(R3, FP)
        .alu_imm(Alu::Add, R3, i32::from(ST_UDP_LEN))
        .mov_imm(R4, 2)
        .mov_imm(R5, 0)
        .call(SKB_STORE_BYTES)
        // The template's checksum counts a total length of zero.
        .mov(R1, R6)
        .mov_imm(R2, ETH_LEN + 10)
        .mov_imm(R3, 0)
        .load(Size::H, R4, FP, ST_TOT_LEN)
        .mov_imm(R5, 2)
        .call(L3_CSUM_REPLACE)
        // UDP source port from the flow hash (ECMP and RSS entropy on the
        // underlay), in 49152–65535.
        .mov(R1, R6)
        .call(GET_HASH_RECALC)
        // (Stored little-endian: the low byte is the port's high byte.)
        .alu_imm(Alu::Or, R0, 0x00c0)
        .store(Size::H, FP, ST_SPORT, R0)
        .mov(R1, R6)
        .mov_imm(R2, ETH_LEN + 20)
        .mov(R3, FP)
        .alu_imm(Alu::Add, R3, i32::from(ST_SPORT))
        .mov_imm(R4, 2)
        .mov_imm(R5, 0)
        .call(SKB_STORE_BYTES)
        // Out of the underlay; the kernel routes the outer packet (the
        // peer may sit behind a router) and fills in the next hop's MAC.
        .load(Size::W, R1, R7, 0)
        .mov_imm(R2, 0)
        .mov_imm(R3, 0)
        .mov_imm(R4, 0)
        .call(REDIRECT_NEIGH)
        .exit();
}

fn to_pod(v4: Family, v6: Family) -> Result<Vec<crate::asm::Insn>, AsmError> {
    let mut a = Asm::new();
    a.mov(R6, R1)
        .store_imm(Size::W, FP, ST_DECAP, 0)
        .load(Size::W, R2, R6, SKB_DATA)
        .load(Size::W, R3, R6, SKB_DATA_END)
        .mov(R4, R2)
        .alu_imm(Alu::Add, R4, ENCAP_LEN as i32 + HEADERS)
        .jump_reg(Cond::Gt, R4, R3, "frame")
        .load(Size::H, R4, R2, ETH_PROTO)
        .jump_imm(Cond::Ne, R4, ETH_IPV4, "frame")
        .load(Size::B, R4, R2, IP_PROTO)
        .jump_imm(Cond::Ne, R4, 17, "frame")
        // UDP: a VXLAN packet for this node as weft's devices send them
        // (IPv4 without options, not a fragment, no UDP checksum, no VXLAN
        // extensions), whose fields the sender's template must match once
        // the inner source is known; anything else is the stack's.
        .load(Size::W, R4, R6, SKB_PKT_TYPE)
        .jump_imm(Cond::Ne, R4, 0, "pass"); // PACKET_HOST
    whole_ipv4(&mut a);
    a.load(Size::H, R4, R2, UDP_CSUM)
        .jump_imm(Cond::Ne, R4, 0, "pass")
        .load(Size::W, R4, R2, VXLAN_FLAGS)
        .jump_imm(Cond::Ne, R4, 0x08, "pass")
        .load(Size::W, R4, R2, IP_SRC)
        .store(Size::W, FP, ST_OUTER, R4)
        .load(Size::W, R4, R2, IP_DST)
        .store(Size::W, FP, ST_OUTER + 4, R4)
        .load(Size::W, R4, R2, VXLAN_VNI)
        .store(Size::W, FP, ST_OUTER + 8, R4)
        .load(Size::H, R4, R2, UDP_DPORT)
        .store(Size::H, FP, ST_OUTER + 12, R4)
        .load(Size::H, R4, R2, INNER_DST_MAC)
        .store(Size::H, FP, ST_OUTER + 16, R4)
        .load(Size::H, R4, R2, INNER_DST_MAC + 2)
        .store(Size::H, FP, ST_OUTER + 18, R4)
        .load(Size::H, R4, R2, INNER_DST_MAC + 4)
        .store(Size::H, FP, ST_OUTER + 20, R4)
        .store_imm(Size::W, FP, ST_DECAP, 1)
        .alu_imm(Alu::Add, R2, ENCAP_LEN as i32)
        .label("frame");
    by_family(&mut a, v4, v6, to_pod_family);
    a.finish()
}

/// `to_pod` for one family, from the frame at R2 (the packet's, or the
/// inner one of a VXLAN packet; R3 = the packet end).
fn to_pod_family(a: &mut Asm, fam: Family) {
    parse_frame(a, fam);
    keys(a, fam, Way::ToPod);
    lookup(a, fam.local, fam.flow_key());
    a.jump_imm(Cond::Eq, R0, 0, "pass")
        .load(Size::W, R1, R0, 4)
        .alu_imm(Alu::And, R1, FLAG_OPEN as i32)
        .jump_imm(Cond::Eq, R1, 0, "pass")
        .load(Size::W, R1, R0, 0)
        .store(Size::W, FP, ST_IFINDEX, R1)
        .load(Size::W, R1, R0, 8)
        .store(Size::W, FP, ST_L2, R1)
        .load(Size::W, R1, R0, 12)
        .store(Size::W, FP, ST_L2 + 4, R1)
        .load(Size::W, R1, R0, 16)
        .store(Size::W, FP, ST_L2 + 8, R1);
    // Only from pods on other nodes.
    lookup(a, fam.remote, fam.lpm_key());
    let checked = fam.label("checked");
    a.jump_imm(Cond::Eq, R0, 0, "pass")
        .load(Size::W, R1, FP, ST_DECAP)
        .jump_imm(Cond::Eq, R1, 0, &checked);
    // Encapsulated: only by the VTEP the inner source's node has, to this
    // node's, on the cluster's port and VNI (what this node's VXLAN device
    // would accept, and no one else's pods).
    a.load(Size::W, R1, R0, 4)
        .jump_imm(Cond::Ne, R1, REMOTE_VXLAN as i32, "pass");
    for (packet, template, size) in [
        (ST_OUTER, T_PEER, Size::W),
        (ST_OUTER + 4, T_LOCAL, Size::W),
        (ST_OUTER + 8, T_VNI, Size::W),
        (ST_OUTER + 12, T_PORT, Size::H),
        (ST_OUTER + 16, T_LOCAL_MAC, Size::H),
        (ST_OUTER + 18, T_LOCAL_MAC + 2, Size::H),
        (ST_OUTER + 20, T_LOCAL_MAC + 4, Size::H),
    ] {
        a.load(size, R1, FP, packet)
            .load(size, R2, R0, template)
            .jump_reg(Cond::Ne, R1, R2, "pass");
    }
    a.label(&checked);
    flow(a, fam);
    let deliver = fam.label("deliver");
    a.label(&fam.label("fwd"))
        .load(Size::W, R1, FP, ST_DECAP)
        .jump_imm(Cond::Eq, R1, 0, &deliver)
        // Off with the outer headers (the outer Ethernet header moves up
        // over them); refused, the stack decapsulates the packet as it came.
        .mov(R1, R6)
        .mov_imm(R2, -(ENCAP_LEN as i32))
        .mov_imm(R3, ADJ_ROOM_MAC)
        .load_imm64(R4, if fam.v6 { DECAP_FLAGS6 } else { DECAP_FLAGS })
        .call(SKB_ADJUST_ROOM)
        .jump_imm(Cond::Ne, R0, 0, "pass");
    if fam.v6 {
        // The outer Ethernet header said IPv4.
        reload(a, fam, 0);
        a.store_imm(Size::H, R2, ETH_PROTO, ETH_IPV6);
    }
    a.label(&deliver);
    hop(a, fam, 0);
    // The pod accepts frames for its own MAC from its gateway's.
    a.load(Size::W, R1, FP, ST_L2)
        .store(Size::W, R2, 0, R1)
        .load(Size::W, R1, FP, ST_L2 + 4)
        .store(Size::W, R2, 4, R1)
        .load(Size::W, R1, FP, ST_L2 + 8)
        .store(Size::W, R2, 8, R1);
    hop_checksum(a, fam, 0);
    a.load(Size::W, R1, FP, ST_IFINDEX)
        .mov_imm(R2, 0)
        .call(REDIRECT_PEER)
        .exit();
}
