//! The pod fast path: two tc programs that carry TCP between a pod on this
//! node and a pod on another node past the node's IP stack.
//!
//! - `from_pod`, on the ingress of each pod's host-side veth, sends the
//!   pod's packets for a remote pod straight out of the link its route uses
//!   (`bpf_redirect_neigh`: the kernel fills in the next hop's MAC); for a
//!   VXLAN peer over IPv4 it encapsulates the packet itself (outer IPv4,
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
//! Both decrement the TTL as a router does. Everything else — other
//! protocols, IPv6, fragments, IP options, Services (ClusterIPs and node
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

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

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
const TCP_DPORT: i16 = 36;
const TCP_FLAGS: i16 = 47;
const HEADERS: i32 = 54;
const ETH_LEN: i32 = 14;

/// Outer packet offsets of VXLAN over IPv4 (the inner frame starts at
/// `ENCAP_LEN`).
const UDP_DPORT: i16 = 36;
const UDP_CSUM: i16 = 40;
const VXLAN_FLAGS: i16 = 42;
const VXLAN_VNI: i16 = 46;
const INNER_DST_MAC: i16 = 50;

/// Stack slots (offsets from the frame pointer).
const ST_IFINDEX: i16 = -4;
const ST_POD_KEY: i16 = -8;
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
                v[16..16 + ENCAP_LEN].copy_from_slice(&e.template());
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

/// The maps and programs of one node's fast path. Dropping it closes the
/// descriptors; programs attached to links keep running with their maps.
#[derive(Debug)]
pub struct FastPath {
    local: Map,
    remote: Map,
    flows: Map,
    from_pod: Program,
    to_pod: Program,
}

impl FastPath {
    /// Creates the maps and loads both programs.
    pub fn new() -> Result<FastPath, Error> {
        let local = Map::create(MapKind::Hash, 4, LOCAL_VALUE, MAX_LOCAL_PODS)
            .map_err(map_err("create local pod map"))?;
        let remote = Map::create(MapKind::LpmTrie, 8, REMOTE_VALUE, MAX_REMOTE_CIDRS)
            .map_err(map_err("create remote CIDR map"))?;
        let flows =
            Map::create(MapKind::LruHash, 12, 8, MAX_FLOWS).map_err(map_err("create flow map"))?;
        Self::with_maps(local, remote, flows)
    }

    /// Takes over the maps of a running fast path program (by its ID, as
    /// tc reports the attached filter) and loads fresh programs over them:
    /// a restarted agent keeps the flows its predecessor fast-pathed, so
    /// none of them falls back to the stack half-way (where conntrack
    /// would refuse a first FIN or RST as invalid). `None` when the program
    /// is gone or is not one of ours.
    pub fn adopt(prog_id: u32) -> Result<Option<FastPath>, Error> {
        let maps = match crate::sys::program_maps(prog_id) {
            Ok(maps) => maps,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(map_err(format!("read program {prog_id}'s maps"))(e)),
        };
        let mut local = None;
        let mut remote = None;
        let mut flows = None;
        for (map, code) in maps {
            let slot = match (code, map.sizes()) {
                (c, (4, LOCAL_VALUE)) if c == MapKind::Hash.code() => &mut local,
                (c, (8, REMOTE_VALUE)) if c == MapKind::LpmTrie.code() => &mut remote,
                (c, (12, 8)) if c == MapKind::LruHash.code() => &mut flows,
                _ => continue,
            };
            *slot = Some(map);
        }
        match (local, remote, flows) {
            (Some(l), Some(r), Some(f)) => Self::with_maps(l, r, f).map(Some),
            _ => Ok(None),
        }
    }

    fn with_maps(local: Map, remote: Map, flows: Map) -> Result<FastPath, Error> {
        let from_pod = from_pod(&local, &remote, &flows).map_err(|e| Error::Asm("from_pod", e))?;
        let to_pod = to_pod(&local, &remote, &flows).map_err(|e| Error::Asm("to_pod", e))?;
        let from_pod = Program::load(PROG_SCHED_CLS, "weft_from_pod", &from_pod, LICENSE)?;
        let to_pod = Program::load(PROG_SCHED_CLS, "weft_to_pod", &to_pod, LICENSE)?;
        Ok(FastPath {
            local,
            remote,
            flows,
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

    /// Makes the local pod map equal `want`: sets what differs, removes the
    /// rest. Returns how many entries changed.
    pub fn sync_local(&self, want: &BTreeMap<Ipv4Addr, LocalPod>) -> Result<usize, Error> {
        let mut changed = 0;
        let have = self.local.keys().map_err(map_err("list local pods"))?;
        for key in have {
            let ip = Ipv4Addr::new(key[0], key[1], key[2], key[3]);
            if !want.contains_key(&ip) {
                self.local
                    .delete(&key)
                    .map_err(map_err(format!("remove local pod {ip}")))?;
                changed += 1;
            }
        }
        for (ip, pod) in want {
            let value = pod.value();
            let key = ip.octets();
            let current = self
                .local
                .get(&key)
                .map_err(map_err(format!("read local pod {ip}")))?;
            if current.as_deref() != Some(&value[..]) {
                self.local
                    .update(&key, &value)
                    .map_err(map_err(format!("set local pod {ip}")))?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Makes the remote CIDR map equal `want` (CIDR → how its packets
    /// leave). Returns how many entries changed.
    pub fn sync_remote(&self, want: &BTreeMap<Ipv4Net, Remote>) -> Result<usize, Error> {
        let lpm_key = |net: &Ipv4Net| {
            let mut k = [0u8; 8];
            k[0..4].copy_from_slice(&u32::from(net.prefix_len()).to_ne_bytes());
            k[4..8].copy_from_slice(&net.network().octets());
            k
        };
        let mut changed = 0;
        let wanted: BTreeSet<[u8; 8]> = want.keys().map(lpm_key).collect();
        for key in self.remote.keys().map_err(map_err("list remote CIDRs"))? {
            if !wanted.contains(&key[..]) {
                self.remote
                    .delete(&key)
                    .map_err(map_err("remove remote CIDR"))?;
                changed += 1;
            }
        }
        for (net, remote) in want {
            let key = lpm_key(net);
            let value = remote.value();
            let current = self
                .remote
                .get(&key)
                .map_err(map_err(format!("read remote CIDR {net}")))?;
            if current.as_deref() != Some(&value[..]) {
                self.remote
                    .update(&key, &value)
                    .map_err(map_err(format!("set remote CIDR {net}")))?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// How many flows are fast-pathed (for tests and diagnostics).
    pub fn flow_count(&self) -> Result<usize, Error> {
        Ok(self.flows.keys().map_err(map_err("list flows"))?.len())
    }
}

/// Parses Ethernet + IPv4 (no options, not a fragment, TTL > 1) + TCP with
/// R6 = the context; leaves saddr in R7, daddr in R8, the TCP flags in R9
/// and the packet start in R2. Anything else jumps to `pass`.
fn parse(a: &mut Asm) {
    a.load(Size::W, R2, R6, SKB_DATA)
        .load(Size::W, R3, R6, SKB_DATA_END);
    parse_frame(a);
}

/// [`parse`] of the frame at R2 (the packet start, or the inner frame of a
/// VXLAN packet) with R3 = the packet end.
fn parse_frame(a: &mut Asm) {
    a.mov(R4, R2)
        .alu_imm(Alu::Add, R4, HEADERS)
        .jump_reg(Cond::Gt, R4, R3, "pass")
        // The fields are read as they lie in memory (network order) by a
        // little-endian load: 0x0800 reads as 0x0008.
        .load(Size::H, R4, R2, ETH_PROTO)
        .jump_imm(Cond::Ne, R4, 0x0008, "pass");
    whole_ipv4(a);
    a.load(Size::B, R4, R2, IP_PROTO)
        .jump_imm(Cond::Ne, R4, 6, "pass")
        .load(Size::B, R4, R2, IP_TTL)
        .jump_imm(Cond::Le, R4, 1, "pass")
        .load(Size::W, R7, R2, IP_SRC)
        .load(Size::W, R8, R2, IP_DST)
        .load(Size::B, R9, R2, TCP_FLAGS);
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

/// Looks up `map` with the key at `fp + key`; the value pointer (or 0) in R0.
fn lookup(a: &mut Asm, map: &Map, key: i16) {
    a.load_map(R1, map.raw_fd())
        .mov(R2, FP)
        .alu_imm(Alu::Add, R2, i32::from(key))
        .call(MAP_LOOKUP);
}

/// The flow state machine (module docs); the flow key is on the stack and
/// the TCP flags in R9. Jumps to `fwd` or `pass`.
fn flow(a: &mut Asm, flows: &Map) {
    a.mov(R1, R9)
        .alu_imm(Alu::And, R1, TCP_SYN_ACK)
        .jump_imm(Cond::Eq, R1, TCP_SYN, "flow_syn");
    lookup(a, flows, ST_FLOW_KEY);
    a.jump_imm(Cond::Eq, R0, 0, "pass")
        .load(Size::DW, R1, R0, 0)
        .mov(R2, R9)
        .alu_imm(Alu::And, R2, TCP_SYN_ACK)
        .jump_imm(Cond::Eq, R2, TCP_SYN_ACK, "flow_synack")
        .jump_imm(Cond::Eq, R1, FLOW_ESTABLISHED, "fwd")
        .goto("pass")
        .label("flow_synack")
        .jump_imm(Cond::Ne, R1, FLOW_SYN, "flow_stale")
        .store_imm(Size::DW, R0, 0, FLOW_ESTABLISHED)
        .goto("fwd")
        .label("flow_stale")
        .load_map(R1, flows.raw_fd())
        .mov(R2, FP)
        .alu_imm(Alu::Add, R2, i32::from(ST_FLOW_KEY))
        .call(MAP_DELETE)
        .goto("pass")
        .label("flow_syn")
        .store_imm(Size::DW, FP, ST_FLOW_VAL, FLOW_SYN)
        .load_map(R1, flows.raw_fd())
        .mov(R2, FP)
        .alu_imm(Alu::Add, R2, i32::from(ST_FLOW_KEY))
        .mov(R3, FP)
        .alu_imm(Alu::Add, R3, i32::from(ST_FLOW_VAL))
        .mov_imm(R4, 0)
        .call(MAP_UPDATE)
        .goto("fwd");
}

/// Reloads the packet (helpers invalidate packet pointers), decrements the
/// TTL of the IPv4 header `at` bytes past the Ethernet header in place and
/// leaves the old and new TTL/protocol words in R4/R5 for the checksum fix;
/// R2 = the packet start.
fn decrement_ttl(a: &mut Asm, at: i16) {
    a.load(Size::W, R2, R6, SKB_DATA)
        .load(Size::W, R3, R6, SKB_DATA_END)
        .mov(R4, R2)
        .alu_imm(Alu::Add, R4, HEADERS + i32::from(at))
        .jump_reg(Cond::Gt, R4, R3, "pass")
        .load(Size::H, R4, R2, IP_TTL + at)
        .mov(R5, R4)
        // The TTL is the first byte: the low byte of the little-endian
        // word. It is above 1 (parse checked), so no borrow.
        .alu_imm(Alu::Sub, R5, 1)
        .store(Size::H, R2, IP_TTL + at, R5);
}

/// `bpf_l3_csum_replace(skb, IP_CSUM + at, R4, R5, 2)`.
fn fix_checksum(a: &mut Asm, at: i16) {
    a.mov(R3, R4)
        .mov(R4, R5)
        .mov(R1, R6)
        .mov_imm(R2, IP_CSUM + i32::from(at))
        .mov_imm(R5, 2)
        .call(L3_CSUM_REPLACE);
}

fn from_pod(local: &Map, remote: &Map, flows: &Map) -> Result<Vec<crate::asm::Insn>, AsmError> {
    let mut a = Asm::new();
    a.mov(R6, R1);
    parse(&mut a);
    // Flow key: local = source, remote = destination, then both ports as
    // they lie in the header (source, destination).
    a.store(Size::W, FP, ST_FLOW_KEY, R7)
        .store(Size::W, FP, ST_FLOW_KEY + 4, R8)
        .load(Size::W, R4, R2, TCP_SPORT)
        .store(Size::W, FP, ST_FLOW_KEY + 8, R4)
        .store_imm(Size::W, FP, ST_FLOW_KEY + 12, 0)
        .store(Size::W, FP, ST_POD_KEY, R7);
    lookup(&mut a, local, ST_POD_KEY);
    a.jump_imm(Cond::Eq, R0, 0, "pass")
        // The source address must be the one given to this veth.
        .load(Size::W, R1, R0, 0)
        .load(Size::W, R2, R6, SKB_INGRESS_IFINDEX)
        .jump_reg(Cond::Ne, R1, R2, "pass")
        .load(Size::W, R1, R0, 4)
        .alu_imm(Alu::And, R1, FLAG_OPEN as i32)
        .jump_imm(Cond::Eq, R1, 0, "pass")
        .store_imm(Size::W, FP, ST_LPM_KEY, 32)
        .store(Size::W, FP, ST_LPM_KEY + 4, R8);
    lookup(&mut a, remote, ST_LPM_KEY);
    a.jump_imm(Cond::Eq, R0, 0, "pass")
        .store(Size::DW, FP, ST_REMOTE, R0)
        .load(Size::W, R1, R0, 0)
        .store(Size::W, FP, ST_IFINDEX, R1);
    flow(&mut a, flows);
    a.label("fwd")
        .load(Size::DW, R7, FP, ST_REMOTE)
        .load(Size::W, R1, R7, 4)
        .jump_imm(Cond::Eq, R1, REMOTE_ROUTE as i32, "route");
    encapsulate(&mut a);
    a.label("route");
    decrement_ttl(&mut a, 0);
    fix_checksum(&mut a, 0);
    a.load(Size::W, R1, FP, ST_IFINDEX)
        .mov_imm(R2, 0)
        .mov_imm(R3, 0)
        .mov_imm(R4, 0)
        .call(REDIRECT_NEIGH)
        .exit()
        .label("pass")
        .mov_imm(R0, 0)
        .exit();
    a.finish()
}

/// VXLAN encapsulation by the program (R6 = context, R7 = the remote map
/// value): room for the outer headers, the inner TTL decremented, the
/// template written in, lengths,
/// checksum and source port filled in, then out of the underlay
/// (`bpf_redirect_neigh` routing the outer packet). Exits.
fn encapsulate(a: &mut Asm) {
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
        .jump_imm(Cond::Ne, R0, 0, "pass");
    // The inner packet is routed: its TTL drops by one.
    decrement_ttl(a, ENCAP_LEN as i16);
    fix_checksum(a, ENCAP_LEN as i16);
    a.mov(R1, R6)
        .mov_imm(R2, ETH_LEN)
        .mov(R3, R7)
        .alu_imm(Alu::Add, R3, 16)
        .mov_imm(R4, ENCAP_LEN as i32)
        .mov_imm(R5, 0)
        .call(SKB_STORE_BYTES)
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

fn to_pod(local: &Map, remote: &Map, flows: &Map) -> Result<Vec<crate::asm::Insn>, AsmError> {
    let mut a = Asm::new();
    a.mov(R6, R1)
        .store_imm(Size::W, FP, ST_DECAP, 0)
        .load(Size::W, R2, R6, SKB_DATA)
        .load(Size::W, R3, R6, SKB_DATA_END)
        .mov(R4, R2)
        .alu_imm(Alu::Add, R4, ENCAP_LEN as i32 + HEADERS)
        .jump_reg(Cond::Gt, R4, R3, "frame")
        .load(Size::H, R4, R2, ETH_PROTO)
        .jump_imm(Cond::Ne, R4, 0x0008, "frame")
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
    parse_frame(&mut a);
    // Flow key: local = destination, remote = source, then the local port
    // (destination) and the remote one (source).
    a.store(Size::W, FP, ST_FLOW_KEY, R8)
        .store(Size::W, FP, ST_FLOW_KEY + 4, R7)
        .load(Size::H, R4, R2, TCP_DPORT)
        .store(Size::H, FP, ST_FLOW_KEY + 8, R4)
        .load(Size::H, R4, R2, TCP_SPORT)
        .store(Size::H, FP, ST_FLOW_KEY + 10, R4)
        .store_imm(Size::W, FP, ST_FLOW_KEY + 12, 0)
        .store(Size::W, FP, ST_POD_KEY, R8);
    lookup(&mut a, local, ST_POD_KEY);
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
        .store(Size::W, FP, ST_L2 + 8, R1)
        // Only from pods on other nodes.
        .store_imm(Size::W, FP, ST_LPM_KEY, 32)
        .store(Size::W, FP, ST_LPM_KEY + 4, R7);
    lookup(&mut a, remote, ST_LPM_KEY);
    a.jump_imm(Cond::Eq, R0, 0, "pass")
        .load(Size::W, R1, FP, ST_DECAP)
        .jump_imm(Cond::Eq, R1, 0, "checked");
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
    a.label("checked");
    flow(&mut a, flows);
    a.label("fwd")
        .load(Size::W, R1, FP, ST_DECAP)
        .jump_imm(Cond::Eq, R1, 0, "deliver")
        // Off with the outer headers (the outer Ethernet header moves up
        // over them); refused, the stack decapsulates the packet as it came.
        .mov(R1, R6)
        .mov_imm(R2, -(ENCAP_LEN as i32))
        .mov_imm(R3, ADJ_ROOM_MAC)
        .load_imm64(R4, DECAP_FLAGS)
        .call(SKB_ADJUST_ROOM)
        .jump_imm(Cond::Ne, R0, 0, "pass")
        .label("deliver");
    decrement_ttl(&mut a, 0);
    // The pod accepts frames for its own MAC from its gateway's.
    a.load(Size::W, R1, FP, ST_L2)
        .store(Size::W, R2, 0, R1)
        .load(Size::W, R1, FP, ST_L2 + 4)
        .store(Size::W, R2, 4, R1)
        .load(Size::W, R1, FP, ST_L2 + 8)
        .store(Size::W, R2, 8, R1);
    fix_checksum(&mut a, 0);
    a.load(Size::W, R1, FP, ST_IFINDEX)
        .mov_imm(R2, 0)
        .call(REDIRECT_PEER)
        .exit()
        .label("pass")
        .mov_imm(R0, 0)
        .exit();
    a.finish()
}
