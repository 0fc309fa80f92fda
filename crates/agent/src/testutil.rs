//! Builders shared by the unit tests.

use std::collections::BTreeMap;

use ipnet::IpNet;
use weft_model::{Node, Pod, PodPhase};
use weft_netlink::format_mac;

use crate::config::{ANNOTATION_BACKEND, ANNOTATION_VTEP_IP, ANNOTATION_VTEP_MAC, LocalFacts};
use crate::desired::vtep_mac;

/// A node with pod CIDRs and addresses; `published` adds the annotations
/// its agent would publish for a VXLAN-capable backend.
pub fn node(name: &str, cidrs: &[&str], addrs: &[&str], published: bool) -> Node {
    let mut annotations = BTreeMap::new();
    if published {
        annotations.insert(ANNOTATION_BACKEND.to_string(), "vxlan".to_string());
        annotations.insert(ANNOTATION_VTEP_MAC.to_string(), format_mac(&vtep_mac(name)));
        annotations.insert(ANNOTATION_VTEP_IP.to_string(), addrs[0].to_string());
    }
    Node {
        name: name.to_string(),
        labels: BTreeMap::new(),
        pod_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        annotations,
    }
}

/// A pod on `node` with `ips`.
pub fn pod(name: &str, node: &str, ips: &[&str]) -> Pod {
    Pod {
        namespace: "default".into(),
        name: name.into(),
        labels: Default::default(),
        node_name: Some(node.into()),
        ips: ips.iter().map(|a| a.parse().unwrap()).collect(),
        ports: Vec::new(),
        host_network: false,
        phase: PodPhase::Running,
        ready: true,
    }
}

/// Local facts of `name` on underlay `eth0` (index 2, MTU 1500) holding
/// `addrs` (with prefixes).
pub fn local(name: &str, addrs: &[&str]) -> LocalFacts {
    LocalFacts {
        underlay_index: 2,
        underlay_name: "eth0".into(),
        underlay_mtu: 1500,
        underlay_addrs: addrs.iter().map(|a| a.parse::<IpNet>().unwrap()).collect(),
        vtep_mac: vtep_mac(name),
    }
}

/// Parses an address.
pub fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// Parses a prefix.
pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
