//! The agent's inputs: its configuration, the cluster it sees, and the facts
//! it observed about its own node.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::Error;

/// Annotation in which a node publishes the backend it runs.
pub const ANNOTATION_BACKEND: &str = "weft.dev/backend";
/// Annotation in which a node publishes its VTEP's MAC address.
pub const ANNOTATION_VTEP_MAC: &str = "weft.dev/vtep-mac";
/// Annotation in which a node publishes its VTEP's underlay address.
pub const ANNOTATION_VTEP_IP: &str = "weft.dev/vtep-ip";

/// Protocol number on every route weft installs (`ip route … proto 0x57`):
/// the one mark that makes a route weft's to replace or delete.
pub const ROUTE_PROTOCOL: u8 = 0x57;
/// The IANA VXLAN port is 4789; 8472 is the Linux default and Flannel's.
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
/// The VXLAN device's default name.
pub const DEFAULT_VXLAN_DEV: &str = "weft.vxlan";
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// Outer IPv6 (40) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const VXLAN_OVERHEAD_V6: u32 = 70;

/// How traffic reaches pods on other nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Encapsulate in VXLAN towards every peer.
    #[default]
    Vxlan,
    /// Route pod CIDRs via the peers' node addresses (needs L2 adjacency).
    HostGw,
    /// host-gw to peers on the same L2 segment, VXLAN to the others.
    Auto,
}

impl Backend {
    /// The name used in configuration and in [`ANNOTATION_BACKEND`].
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
            Backend::Auto => "auto",
        }
    }

    /// Whether this backend keeps a VXLAN device. `auto` keeps one even while
    /// every peer is adjacent, so that a new distant peer changes neither the
    /// device nor the pod MTU.
    pub fn uses_vxlan(self) -> bool {
        self != Backend::HostGw
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Backend, Error> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "auto" => Ok(Backend::Auto),
            other => Err(Error::Config(format!(
                "unknown backend {other:?} (expected vxlan, host-gw or auto)"
            ))),
        }
    }
}

/// The agent's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// This node's name in the model.
    pub node_name: String,
    /// How to reach other nodes' pods.
    pub backend: Backend,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// VXLAN UDP destination port.
    pub vxlan_port: u16,
    /// The VXLAN device's name (at most 15 bytes).
    pub vxlan_dev: String,
    /// Pod MTU override; `None` derives it from the underlay.
    pub mtu: Option<u32>,
    /// Destinations that are not masqueraded; empty means the union of all
    /// nodes' pod CIDRs.
    pub cluster_cidrs: Vec<IpNet>,
    /// Protocol number that marks weft's routes.
    pub route_protocol: u8,
}

impl AgentConfig {
    /// The defaults for `node_name`: VXLAN, VNI 1, port 8472, `weft.vxlan`,
    /// MTU from the underlay, cluster CIDRs from the nodes, protocol 0x57.
    pub fn new(node_name: impl Into<String>) -> AgentConfig {
        AgentConfig {
            node_name: node_name.into(),
            backend: Backend::default(),
            vni: 1,
            vxlan_port: DEFAULT_VXLAN_PORT,
            vxlan_dev: DEFAULT_VXLAN_DEV.to_string(),
            mtu: None,
            cluster_cidrs: Vec::new(),
            route_protocol: ROUTE_PROTOCOL,
        }
    }

    /// Refuses values the kernel would refuse later, with a message that
    /// names the setting.
    pub fn validate(&self) -> Result<(), Error> {
        if self.node_name.is_empty() {
            return Err(Error::Config("agent config: node name is empty".into()));
        }
        if self.vni >= 1 << 24 {
            return Err(Error::Config(format!(
                "agent config: VNI {} does not fit in 24 bits",
                self.vni
            )));
        }
        let dev = &self.vxlan_dev;
        if dev.is_empty() || dev.len() > weft_netlink::IFNAMSIZ_MAX || dev.contains('/') {
            return Err(Error::Config(format!(
                "agent config: VXLAN device name {dev:?} must be 1 to 15 bytes without '/'"
            )));
        }
        if self.vxlan_port == 0 {
            return Err(Error::Config("agent config: VXLAN port is 0".into()));
        }
        Ok(())
    }
}

/// What [`crate::desired`] reads of the cluster. `weftd` maps the
/// datastore's snapshot to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The snapshot's revision, reported back in logs.
    pub revision: u64,
    /// Every node, this one included.
    pub nodes: Vec<weft_model::Node>,
    /// Every pod.
    pub pods: Vec<weft_model::Pod>,
}

/// What the agent observed about its own node's kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFacts {
    /// ifindex of the underlay interface (the one holding the node's first
    /// address from the model).
    pub underlay_index: u32,
    /// Its name.
    pub underlay_name: String,
    /// Its MTU.
    pub underlay_mtu: u32,
    /// Its addresses with their prefix lengths (link-local ones left out):
    /// a peer inside one of these prefixes is on the same L2 segment.
    pub underlay_addrs: Vec<IpNet>,
    /// The MAC of this node's VTEP, see [`crate::vtep_mac`].
    pub vtep_mac: [u8; 6],
}

impl LocalFacts {
    /// Whether `addr` is inside one of the underlay's prefixes.
    pub fn is_adjacent(&self, addr: IpAddr) -> bool {
        self.underlay_addrs.iter().any(|net| net.contains(&addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_round_trips_through_text() {
        for b in [Backend::Vxlan, Backend::HostGw, Backend::Auto] {
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
        }
        assert!("bgp".parse::<Backend>().is_err());
    }

    #[test]
    fn config_validation_names_the_setting() {
        let mut cfg = AgentConfig::new("n1");
        assert!(cfg.validate().is_ok());
        cfg.vxlan_dev = "weft.vxlan.toolong".into();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("VXLAN device")
        );
        cfg = AgentConfig::new("n1");
        cfg.vni = 1 << 24;
        assert!(cfg.validate().unwrap_err().to_string().contains("VNI"));
    }
}
