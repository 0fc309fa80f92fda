//! The pod fast path: two tc programs that carry TCP between a pod on this
//! node and a pod on another node past the node's IP stack.
//!
//! - `from_pod`, on the ingress of each pod's host-side veth, sends the
//!   pod's packets for a remote pod straight out of the link its route uses
//!   (`bpf_redirect_neigh`: the kernel fills in the next hop's MAC).
//! - `to_pod`, on the ingress of the node's uplink (host-gw) or VXLAN
//!   device, hands packets for a local pod straight to the pod's side of its
//!   veth (`bpf_redirect_peer`: no backlog queue, no second stack pass).
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
const L3_CSUM_REPLACE: i32 = 10;
const REDIRECT_NEIGH: i32 = 152;
const REDIRECT_PEER: i32 = 155;

/// `struct __sk_buff` offsets.
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

/// Stack slots (offsets from the frame pointer).
const ST_IFINDEX: i16 = -4;
const ST_POD_KEY: i16 = -8;
const ST_LPM_KEY: i16 = -16;
const ST_FLOW_KEY: i16 = -32;
const ST_FLOW_VAL: i16 = -40;
const ST_L2: i16 = -56;

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
        let remote = Map::create(MapKind::LpmTrie, 8, 4, MAX_REMOTE_CIDRS)
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
                (c, (8, 4)) if c == MapKind::LpmTrie.code() => &mut remote,
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

    /// Makes the remote CIDR map equal `want` (CIDR → the ifindex its
    /// route leaves by). Returns how many entries changed.
    pub fn sync_remote(&self, want: &BTreeMap<Ipv4Net, u32>) -> Result<usize, Error> {
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
        for (net, ifindex) in want {
            let key = lpm_key(net);
            let value = ifindex.to_ne_bytes();
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
        .load(Size::W, R3, R6, SKB_DATA_END)
        .mov(R4, R2)
        .alu_imm(Alu::Add, R4, HEADERS)
        .jump_reg(Cond::Gt, R4, R3, "pass")
        // The fields are read as they lie in memory (network order) by a
        // little-endian load: 0x0800 reads as 0x0008.
        .load(Size::H, R4, R2, ETH_PROTO)
        .jump_imm(Cond::Ne, R4, 0x0008, "pass")
        .load(Size::B, R4, R2, IP_VER_IHL)
        .jump_imm(Cond::Ne, R4, 0x45, "pass")
        // More-fragments flag and fragment offset.
        .load(Size::H, R4, R2, IP_FRAG)
        .alu_imm(Alu::And, R4, 0xff3f)
        .jump_imm(Cond::Ne, R4, 0, "pass")
        .load(Size::B, R4, R2, IP_PROTO)
        .jump_imm(Cond::Ne, R4, 6, "pass")
        .load(Size::B, R4, R2, IP_TTL)
        .jump_imm(Cond::Le, R4, 1, "pass")
        .load(Size::W, R7, R2, IP_SRC)
        .load(Size::W, R8, R2, IP_DST)
        .load(Size::B, R9, R2, TCP_FLAGS);
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
/// TTL in place and leaves the old and new TTL/protocol words in R4/R5 for
/// the checksum fix; R2 = the packet start.
fn decrement_ttl(a: &mut Asm) {
    a.load(Size::W, R2, R6, SKB_DATA)
        .load(Size::W, R3, R6, SKB_DATA_END)
        .mov(R4, R2)
        .alu_imm(Alu::Add, R4, HEADERS)
        .jump_reg(Cond::Gt, R4, R3, "pass")
        .load(Size::H, R4, R2, IP_TTL)
        .mov(R5, R4)
        // The TTL is the first byte: the low byte of the little-endian
        // word. It is above 1 (parse checked), so no borrow.
        .alu_imm(Alu::Sub, R5, 1)
        .store(Size::H, R2, IP_TTL, R5);
}

/// `bpf_l3_csum_replace(skb, IP_CSUM, R4, R5, 2)`.
fn fix_checksum(a: &mut Asm) {
    a.mov(R3, R4)
        .mov(R4, R5)
        .mov(R1, R6)
        .mov_imm(R2, IP_CSUM)
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
        .load(Size::W, R1, R0, 0)
        .store(Size::W, FP, ST_IFINDEX, R1);
    flow(&mut a, flows);
    a.label("fwd");
    decrement_ttl(&mut a);
    fix_checksum(&mut a);
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

fn to_pod(local: &Map, remote: &Map, flows: &Map) -> Result<Vec<crate::asm::Insn>, AsmError> {
    let mut a = Asm::new();
    a.mov(R6, R1);
    parse(&mut a);
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
    a.jump_imm(Cond::Eq, R0, 0, "pass");
    flow(&mut a, flows);
    a.label("fwd");
    decrement_ttl(&mut a);
    // The pod accepts frames for its own MAC from its gateway's.
    a.load(Size::W, R1, FP, ST_L2)
        .store(Size::W, R2, 0, R1)
        .load(Size::W, R1, FP, ST_L2 + 4)
        .store(Size::W, R2, 4, R1)
        .load(Size::W, R1, FP, ST_L2 + 8)
        .store(Size::W, R2, 8, R1);
    fix_checksum(&mut a);
    a.load(Size::W, R1, FP, ST_IFINDEX)
        .mov_imm(R2, 0)
        .call(REDIRECT_PEER)
        .exit()
        .label("pass")
        .mov_imm(R0, 0)
        .exit();
    a.finish()
}
