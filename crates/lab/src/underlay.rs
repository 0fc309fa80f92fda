//! The underlay: L2 segments, each a bridge inside its own namespace
//! (`<prefix>-ul`, `<prefix>-ul1`, …), and one veth per node, whose node end
//! (`eth0`) is created directly in the node's namespace. With more than one
//! segment a router namespace (`<prefix>-rt`) has a leg on each bridge and
//! forwards between them, and every node has default routes through its
//! segment's router address: nodes on one segment are L2-adjacent (host-gw
//! works between them), nodes on different segments only reach each other
//! routed (the `auto` backend must use VXLAN there). Nothing of it ever
//! exists in the root namespace.
//!
//! Addressing: segment `s` is 172.30.s.0/24 and fd00:30:s::/64 (s in hex),
//! its router leg .1 and ::1. Node `i` (from 1) sits on segment
//! `(i - 1) % segments`, as 172.30.s.<10+i> and fd00:30:s::<10+i>, and owns
//! pod CIDRs 10.244.i.0/24 and fd00:10:244:i::/64 (i in hex there, so all
//! nodes stay inside fd00:10:244::/56, the IPv4 ones inside 10.244.0.0/16).
//! A `kube` lab's control plane sits on segment 0 as 172.30.0.5 and
//! fd00:30::5, below every node.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use weft_netlink::{Netns, sysctl_set_in};

use crate::error::{LabError, Result};
use crate::layout::Layout;
use crate::netns;
use crate::services::alloc::{SERVICE_CIDR_V4, SERVICE_CIDR_V6};
use crate::state::{ExternalRecord, LabState, NodeRecord, SegmentRecord};

/// The most nodes a lab can have (addresses .11 to .210 of a segment).
pub const MAX_NODES: usize = 200;

/// The most underlay segments a lab can have: two are enough to show
/// adjacency against routing; a few more cost only a namespace and a
/// router leg each.
pub const MAX_SEGMENTS: usize = 8;

/// The bridge's name inside a segment's namespace.
pub const BRIDGE: &str = "br0";

/// The name of the router's port on each segment's bridge.
const ROUTER_PORT: &str = "rt";

/// The underlay MTU (veths and bridge keep the default).
pub const UNDERLAY_MTU: u32 = 1500;

/// The name of node `i` (from 1).
pub fn node_name(i: usize) -> String {
    format!("node{i}")
}

/// The segment node `i` (from 1) sits on: round-robin, so that with two
/// segments every node has both an adjacent and a routed peer as soon as
/// there are three.
pub fn segment_of(i: usize, segments: usize) -> usize {
    (i.max(1) - 1) % segments.max(1)
}

/// Segment `s`'s IPv4 and IPv6 subnets.
pub fn segment_subnets(s: usize) -> Vec<IpNet> {
    segment_hosts(s, 0, 0)
}

/// The router's addresses on segment `s` (with prefix length).
pub fn router_addresses(s: usize) -> Vec<IpNet> {
    segment_hosts(s, 1, 1)
}

/// Node `i`'s underlay addresses on segment `segment`.
pub fn node_addresses(i: usize, segment: usize) -> Vec<IpNet> {
    let host = u8::try_from(10 + i).expect("at most MAX_NODES nodes");
    // The IPv6 host part reuses the IPv4 one's decimal digits (::11 for
    // .11), so both read the same in `ip addr`.
    let v6 = u16::from_str_radix(&host.to_string(), 16).expect("decimal digits are hex digits");
    segment_hosts(segment, host, v6)
}

/// Host `v4`/`v6` of segment `s`, as /24 and /64.
fn segment_hosts(s: usize, v4: u8, v6: u16) -> Vec<IpNet> {
    let s8 = u8::try_from(s).expect("at most MAX_SEGMENTS segments");
    vec![
        IpNet::new(IpAddr::V4(Ipv4Addr::new(172, 30, s8, v4)), 24).expect("valid prefix"),
        IpNet::new(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0x30, u16::from(s8), 0, 0, 0, 0, v6)),
            64,
        )
        .expect("valid prefix"),
    ]
}

/// The prefix length of a node's IPv4 pod CIDR.
pub const POD_PREFIX_V4: u8 = 24;

/// The prefix length of a node's IPv6 pod CIDR.
pub const POD_PREFIX_V6: u8 = 64;

/// Node `i`'s pod CIDRs for `families` (4 and/or 6).
pub fn pod_cidrs(i: usize, families: &[u8]) -> Vec<IpNet> {
    let i8 = u8::try_from(i).expect("at most MAX_NODES nodes");
    let mut out = Vec::new();
    if families.contains(&4) {
        let v4 = Ipv4Addr::new(10, 244, i8, 0);
        out.push(IpNet::new(IpAddr::V4(v4), POD_PREFIX_V4).expect("valid prefix"));
    }
    if families.contains(&6) {
        let v6 = Ipv6Addr::new(0xfd00, 0x10, 0x244, u16::from(i8), 0, 0, 0, 0);
        out.push(IpNet::new(IpAddr::V6(v6), POD_PREFIX_V6).expect("valid prefix"));
    }
    out
}

/// The ranges holding every node's pod CIDRs of `families`, in the order
/// of `families` (the first is the primary family): 10.244.0.0/16 and
/// fd00:10:244::/56. A `kube` lab's kube-controller-manager allocates
/// node CIDRs of the same prefix lengths from them.
pub fn cluster_cidrs(families: &[u8]) -> Vec<IpNet> {
    families
        .iter()
        .filter_map(|f| match f {
            4 => Some(IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 244, 0, 0)), 16)),
            6 => Some(IpNet::new(
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0)),
                56,
            )),
            _ => None,
        })
        .map(|n| n.expect("valid prefix"))
        .collect()
}

/// Creates segment `index` (its namespace and bridge) and records it.
/// Segments are created in order, before the router and the nodes.
pub fn create_segment(layout: &Layout, state: &mut LabState, index: usize) -> Result<()> {
    if index >= MAX_SEGMENTS || index != state.segments.len() {
        return Err(LabError::Invalid(format!(
            "segment {index}: segments are created in order, at most {MAX_SEGMENTS}"
        )));
    }
    let ns = layout.underlay_netns(index);
    state.netns.push(ns.clone());
    state.save(layout)?;
    netns::create(&ns)?;
    netns::ip_in(&ns, &["link", "add", BRIDGE, "type", "bridge"])?;
    netns::ip_in(&ns, &["link", "set", BRIDGE, "up"])?;
    state.segments.push(SegmentRecord {
        netns: ns,
        bridge: BRIDGE.into(),
        subnets: segment_subnets(index),
        gateways: Vec::new(),
    });
    state.save(layout)
}

/// Creates the router namespace with a leg on every segment's bridge and
/// forwarding on (inside that namespace only), and records its addresses
/// as each segment's gateways.
pub fn create_router(layout: &Layout, state: &mut LabState) -> Result<()> {
    let ns = layout.router_netns();
    state.netns.push(ns.clone());
    state.router = Some(ns.clone());
    state.save(layout)?;
    netns::create(&ns)?;
    let handle = no_dad(&ns)?;
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
        sysctl_set_in(&handle, key, "1")
            .map_err(LabError::netlink(format!("set {key}=1 in {ns}")))?;
    }
    for s in 0..state.segments.len() {
        let segment = state.segments[s].clone();
        let leg = format!("seg{s}");
        // Born in the router's namespace, like a node's eth0.
        netns::ip_in(
            &segment.netns,
            &[
                "link",
                "add",
                ROUTER_PORT,
                "type",
                "veth",
                "peer",
                "name",
                &leg,
                "netns",
                &ns,
            ],
        )?;
        netns::ip_in(
            &segment.netns,
            &["link", "set", ROUTER_PORT, "master", &segment.bridge, "up"],
        )?;
        let addresses = router_addresses(s);
        for a in &addresses {
            netns::ip_in(&ns, &["addr", "add", &a.to_string(), "dev", &leg, "nodad"])?;
        }
        netns::ip_in(&ns, &["link", "set", &leg, "up"])?;
        state.segments[s].gateways = addresses.iter().map(IpNet::addr).collect();
        state.save(layout)?;
    }
    Ok(())
}

/// Turns duplicate address detection off in namespace `ns` before its
/// links exist: while the link-local address is tentative the namespace
/// cannot resolve neighbours, and host-gw over IPv6 would lose the first
/// second of traffic. Set on `default` too, so later links inherit it.
fn no_dad(ns: &str) -> Result<Netns> {
    let handle =
        Netns::open(&netns::path(ns)).map_err(LabError::netlink(format!("open netns {ns}")))?;
    for key in [
        "net.ipv6.conf.all.accept_dad",
        "net.ipv6.conf.default.accept_dad",
    ] {
        sysctl_set_in(&handle, key, "0")
            .map_err(LabError::netlink(format!("set {key}=0 in {ns}")))?;
    }
    Ok(handle)
}

/// The external client's host number on segment 0, above every node's.
const EXTERNAL_HOST: u8 = 250;

/// The external client's underlay addresses (segment 0, host .250).
pub fn external_addresses() -> Vec<IpNet> {
    let v6 = u16::from_str_radix(&EXTERNAL_HOST.to_string(), 16).expect("decimal digits");
    segment_hosts(0, EXTERNAL_HOST, v6)
}

/// Creates the external client (`<prefix>-ext`) on segment 0, like a node
/// without an agent, pods or Node object, and records it.
pub fn create_external(layout: &Layout, state: &mut LabState) -> Result<()> {
    let ns = layout.external_netns();
    create_on_segment0(layout, state, &ns, "vethext", &external_addresses())?;
    state.external = Some(ExternalRecord {
        netns: ns,
        addresses: external_addresses(),
    });
    state.save(layout)
}

/// The control plane's host number on segment 0: below every node's
/// (.11 up) and above the router's (.1).
const CONTROL_PLANE_HOST: u8 = 5;

/// The control plane's underlay addresses (segment 0, host .5); the IPv4
/// one is the API endpoint.
pub fn control_plane_addresses() -> Vec<IpNet> {
    let v6 = u16::from_str_radix(&CONTROL_PLANE_HOST.to_string(), 16).expect("decimal digits");
    segment_hosts(0, CONTROL_PLANE_HOST, v6)
}

/// Creates the control plane's namespace on segment 0 (recorded in
/// [`LabState::netns`] before it exists), with default routes through the
/// segment's gateway when a router joins the segments, so that nodes on
/// every segment reach the API. Returns the namespace.
pub fn create_control_plane_netns(layout: &Layout, state: &mut LabState) -> Result<String> {
    let ns = layout.control_plane_netns();
    create_on_segment0(layout, state, &ns, "vethcp", &control_plane_addresses())?;
    Ok(ns)
}

/// Creates namespace `ns` (recorded first) attached to segment 0 through
/// bridge port `port` with `addresses`: a host on the underlay that is
/// not a node.
fn create_on_segment0(
    layout: &Layout,
    state: &mut LabState,
    ns: &str,
    port: &str,
    addresses: &[IpNet],
) -> Result<()> {
    let segment = state
        .segments
        .first()
        .cloned()
        .ok_or_else(|| LabError::Invalid("underlay segment 0 does not exist".into()))?;
    state.netns.push(ns.to_string());
    state.save(layout)?;
    netns::create(ns)?;
    no_dad(ns)?;
    attach(&segment, ns, port, addresses)
}

/// Connects namespace `ns` to `segment` through a veth (`port` on the
/// bridge, `eth0` in `ns`) holding `addresses`, with default routes through
/// the segment's gateways.
fn attach(segment: &SegmentRecord, ns: &str, port: &str, addresses: &[IpNet]) -> Result<()> {
    // Created in the segment's namespace with its peer born in `ns`: the
    // pair never passes through the root namespace.
    netns::ip_in(
        &segment.netns,
        &[
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ],
    )?;
    netns::ip_in(
        &segment.netns,
        &["link", "set", port, "master", &segment.bridge, "up"],
    )?;
    for a in addresses {
        let a = a.to_string();
        netns::ip_in(ns, &["addr", "add", &a, "dev", "eth0", "nodad"])?;
    }
    netns::ip_in(ns, &["link", "set", "eth0", "up"])?;
    // Peers on other segments are reached through the router; `ip` takes
    // the family from the gateway's address.
    for gw in &segment.gateways {
        let gw = gw.to_string();
        netns::ip_in(ns, &["route", "add", "default", "via", &gw, "dev", "eth0"])?;
    }
    Ok(())
}

/// Creates node `i`'s namespace, attaches it to its segment (see
/// [`segment_of`]) with default routes through the segment's gateways,
/// and records it.
pub fn create_node(layout: &Layout, state: &mut LabState, i: usize) -> Result<NodeRecord> {
    if i == 0 || i > MAX_NODES {
        return Err(LabError::Invalid(format!(
            "node index {i} is outside 1..={MAX_NODES}"
        )));
    }
    let name = node_name(i);
    let ns = layout.node_netns(&name);
    let index = segment_of(i, state.segments.len());
    let segment = state
        .segments
        .get(index)
        .cloned()
        .ok_or_else(|| LabError::Invalid(format!("underlay segment {index} does not exist")))?;
    state.netns.push(ns.clone());
    state.save(layout)?;
    netns::create(&ns)?;
    no_dad(&ns)?;
    let addresses = node_addresses(i, index);
    attach(&segment, &ns, &format!("veth{i}"), &addresses)?;
    if segment.gateways.is_empty() {
        // A real node has a default route; without one, the node's own
        // connections to a Service address fail in routing before the
        // proxy's output hook can translate them.
        for family in &state.families {
            let cidr = if *family == 4 {
                SERVICE_CIDR_V4
            } else {
                SERVICE_CIDR_V6
            };
            netns::ip_in(&ns, &["route", "add", cidr, "dev", "eth0"])?;
        }
    }
    let node = NodeRecord {
        name,
        netns: ns,
        segment: index,
        addresses,
        pod_cidrs: pod_cidrs(i, &state.families),
        weftd: None,
        health_addr: None,
    };
    state.nodes.push(node.clone());
    state.save(layout)?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing_follows_the_plan() {
        assert_eq!(
            node_addresses(1, 0),
            vec![
                "172.30.0.11/24".parse::<IpNet>().unwrap(),
                "fd00:30::11/64".parse().unwrap()
            ]
        );
        assert_eq!(
            node_addresses(2, 1),
            vec![
                "172.30.1.12/24".parse::<IpNet>().unwrap(),
                "fd00:30:1::12/64".parse().unwrap()
            ]
        );
        assert_eq!(
            router_addresses(1),
            vec![
                "172.30.1.1/24".parse::<IpNet>().unwrap(),
                "fd00:30:1::1/64".parse().unwrap()
            ]
        );
        assert_eq!(
            segment_subnets(0),
            vec![
                "172.30.0.0/24".parse::<IpNet>().unwrap(),
                "fd00:30::/64".parse().unwrap()
            ]
        );
        assert_eq!(
            pod_cidrs(2, &[4, 6]),
            vec![
                "10.244.2.0/24".parse::<IpNet>().unwrap(),
                "fd00:10:244:2::/64".parse().unwrap()
            ]
        );
        assert_eq!(
            pod_cidrs(12, &[6]),
            vec!["fd00:10:244:c::/64".parse::<IpNet>().unwrap()]
        );
        let cluster: IpNet = "fd00:10:244::/56".parse().unwrap();
        assert!(cluster.contains(&pod_cidrs(MAX_NODES, &[6])[0]));
        assert_eq!(
            node_addresses(MAX_NODES, 0)[0].to_string(),
            "172.30.0.210/24"
        );
        assert_eq!(
            node_addresses(MAX_NODES, MAX_SEGMENTS - 1)[1].to_string(),
            "fd00:30:7::210/64"
        );
    }

    #[test]
    fn cluster_cidrs_hold_every_node_and_skip_the_control_plane() {
        let cluster = cluster_cidrs(&[6, 4]);
        assert_eq!(
            cluster,
            vec![
                "fd00:10:244::/56".parse::<IpNet>().unwrap(),
                "10.244.0.0/16".parse().unwrap()
            ]
        );
        for i in [1, MAX_NODES] {
            for cidr in pod_cidrs(i, &[4, 6]) {
                assert!(cluster.iter().any(|c| c.contains(&cidr)), "{cidr}");
            }
        }
        let cp = control_plane_addresses();
        assert_eq!(cp[0].to_string(), "172.30.0.5/24");
        assert_eq!(cp[1].to_string(), "fd00:30::5/64");
        for i in 1..=MAX_NODES {
            assert_ne!(node_addresses(i, 0)[0], cp[0]);
        }
        assert_ne!(router_addresses(0)[0], cp[0]);
        assert_ne!(external_addresses()[0], cp[0]);
    }

    #[test]
    fn nodes_alternate_between_segments() {
        let of = |n| (1..=4).map(|i| segment_of(i, n)).collect::<Vec<_>>();
        assert_eq!(of(1), [0, 0, 0, 0]);
        assert_eq!(of(2), [0, 1, 0, 1]);
    }
}
