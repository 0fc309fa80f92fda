//! The underlay: a bridge inside its own namespace (`<prefix>-ul`) and one
//! veth per node, whose node end (`eth0`) is created directly in the node's
//! namespace. Nothing of it ever exists in the root namespace.
//!
//! Addressing: node `i` (from 1) is 172.30.0.<10+i>/24 and
//! fd00:30::<10+i>/64 on segment 0 and owns pod CIDRs 10.244.i.0/24 and
//! fd00:10:244:i::/64 (i in hex there, so all nodes stay inside
//! fd00:10:244::/56). The record keeps a segment index per node, so that a
//! second segment behind a router namespace (for the `auto` backend) can be
//! added without changing the rest.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use weft_netlink::{Netns, sysctl_set_in};

use crate::error::{LabError, Result};
use crate::layout::Layout;
use crate::netns;
use crate::state::{LabState, NodeRecord, SegmentRecord};

/// The most nodes a lab can have (addresses .11 to .210 of the segment).
pub const MAX_NODES: usize = 200;

/// The bridge's name inside a segment's namespace.
pub const BRIDGE: &str = "br0";

/// The underlay MTU (veths and bridge keep the default).
pub const UNDERLAY_MTU: u32 = 1500;

/// The name of node `i` (from 1).
pub fn node_name(i: usize) -> String {
    format!("node{i}")
}

/// Node `i`'s underlay addresses on segment 0.
pub fn node_addresses(i: usize) -> Vec<IpNet> {
    let host = u8::try_from(10 + i).expect("at most MAX_NODES nodes");
    // The IPv6 host part reuses the IPv4 one's decimal digits (::11 for
    // .11), so both read the same in `ip addr`.
    let v6: Ipv6Addr = format!("fd00:30::{host}").parse().expect("valid address");
    vec![
        IpNet::new(IpAddr::V4(Ipv4Addr::new(172, 30, 0, host)), 24).expect("valid prefix"),
        IpNet::new(IpAddr::V6(v6), 64).expect("valid prefix"),
    ]
}

/// Node `i`'s pod CIDRs for `families` (4 and/or 6).
pub fn pod_cidrs(i: usize, families: &[u8]) -> Vec<IpNet> {
    let i8 = u8::try_from(i).expect("at most MAX_NODES nodes");
    let mut out = Vec::new();
    if families.contains(&4) {
        out.push(IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 244, i8, 0)), 24).expect("valid prefix"));
    }
    if families.contains(&6) {
        let v6 = Ipv6Addr::new(0xfd00, 0x10, 0x244, u16::from(i8), 0, 0, 0, 0);
        out.push(IpNet::new(IpAddr::V6(v6), 64).expect("valid prefix"));
    }
    out
}

/// Creates segment 0 (its namespace and bridge) and records it.
pub fn create_segment(layout: &Layout, state: &mut LabState) -> Result<()> {
    let ns = layout.underlay_netns(0);
    state.netns.push(ns.clone());
    state.save(layout)?;
    netns::create(&ns)?;
    netns::ip_in(&ns, &["link", "add", BRIDGE, "type", "bridge"])?;
    netns::ip_in(&ns, &["link", "set", BRIDGE, "up"])?;
    state.segments.push(SegmentRecord {
        netns: ns,
        bridge: BRIDGE.into(),
        subnets: vec![
            "172.30.0.0/24".parse().expect("valid"),
            "fd00:30::/64".parse().expect("valid"),
        ],
    });
    state.save(layout)
}

/// Creates node `i`'s namespace, attaches it to segment 0 and records it.
pub fn create_node(layout: &Layout, state: &mut LabState, i: usize) -> Result<NodeRecord> {
    if i == 0 || i > MAX_NODES {
        return Err(LabError::Invalid(format!(
            "node index {i} is outside 1..={MAX_NODES}"
        )));
    }
    let name = node_name(i);
    let ns = layout.node_netns(&name);
    let segment = state
        .segments
        .first()
        .cloned()
        .ok_or_else(|| LabError::Invalid("the underlay segment does not exist".into()))?;
    state.netns.push(ns.clone());
    state.save(layout)?;
    netns::create(&ns)?;
    // No duplicate address detection on the lab's own segment: while the
    // link-local address is tentative the node cannot resolve neighbours,
    // and host-gw over IPv6 would lose the first second of traffic. Set
    // before eth0 exists, so eth0 inherits it from `default`.
    let handle =
        Netns::open(&netns::path(&ns)).map_err(LabError::netlink(format!("open netns {ns}")))?;
    for key in [
        "net.ipv6.conf.all.accept_dad",
        "net.ipv6.conf.default.accept_dad",
    ] {
        sysctl_set_in(&handle, key, "0")
            .map_err(LabError::netlink(format!("set {key}=0 in {ns}")))?;
    }
    let port = format!("veth{i}");
    // Created in the segment's namespace with its peer born in the node's:
    // the pair never passes through the root namespace.
    netns::ip_in(
        &segment.netns,
        &[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
    )?;
    netns::ip_in(
        &segment.netns,
        &["link", "set", &port, "master", &segment.bridge, "up"],
    )?;
    let addresses = node_addresses(i);
    for a in &addresses {
        let a = a.to_string();
        netns::ip_in(&ns, &["addr", "add", &a, "dev", "eth0", "nodad"])?;
    }
    netns::ip_in(&ns, &["link", "set", "eth0", "up"])?;
    let node = NodeRecord {
        name,
        netns: ns,
        segment: 0,
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
            node_addresses(1),
            vec![
                "172.30.0.11/24".parse::<IpNet>().unwrap(),
                "fd00:30::11/64".parse().unwrap()
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
        assert_eq!(node_addresses(MAX_NODES)[0].to_string(), "172.30.0.210/24");
    }
}
