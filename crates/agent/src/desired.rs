//! Decide: the whole kernel state this node should have, as plain values,
//! computed from the cluster view alone (no I/O).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use weft_model::Node;
use weft_netlink::{VxlanSpec, format_mac, parse_mac};

use crate::config::{
    ANNOTATION_BACKEND, ANNOTATION_VTEP_IP, ANNOTATION_VTEP_MAC, AgentConfig, Backend, ClusterView,
    LocalFacts, VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6,
};

/// Everything the node's kernel should hold, plus what the node publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// The VXLAN device: this node's VTEP address as `local`, its stable
    /// [`vtep_mac`], the underlay MTU minus the encapsulation overhead, no
    /// learning. `None` for host-gw, which keeps no VXLAN device.
    pub vxlan: Option<VxlanSpec>,
    /// The VXLAN device's name, also when none is desired: a device of that
    /// name left from an earlier backend is weft's and is removed.
    pub vxlan_name: String,
    /// Addresses on the VXLAN device: network+1 of each own pod CIDR, as a
    /// /32 or /128 (IPAM never hands that address to a pod).
    pub vxlan_addrs: Vec<IpNet>,
    /// Routes to the other nodes' pod CIDRs, sorted by destination.
    pub routes: Vec<DesiredRoute>,
    /// Permanent neighbours on the VXLAN device: each remote overlay
    /// gateway (network+1) at its node's VTEP MAC.
    pub neighbours: Vec<DesiredNeighbour>,
    /// FDB entries on the VXLAN device: each remote VTEP MAC at its node's
    /// underlay address.
    pub fdb: Vec<DesiredFdb>,
    /// What the masquerade table must do.
    pub masquerade: Masquerade,
    /// `net.*` sysctls and their values.
    pub sysctls: Vec<(String, String)>,
    /// Annotations this node publishes on its Node object.
    pub annotations: BTreeMap<String, String>,
    /// The MTU the CNI plugin gives pods.
    pub pod_mtu: u32,
    /// ifindex of the underlay interface, the output of host-gw routes.
    pub underlay_index: u32,
    /// Protocol number of weft's routes.
    pub route_protocol: u8,
}

/// Which device a route leaves through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteDev {
    /// The VXLAN device (its ifindex is known only once it exists).
    Vxlan,
    /// The underlay interface ([`Desired::underlay_index`]).
    Underlay,
}

/// A route to a remote pod CIDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRoute {
    /// The remote pod CIDR.
    pub dst: IpNet,
    /// The next hop: the remote overlay gateway (VXLAN) or the remote node's
    /// address (host-gw).
    pub gateway: IpAddr,
    /// The output device.
    pub dev: RouteDev,
    /// `onlink`: the VXLAN gateway is not inside any prefix of the device.
    pub onlink: bool,
}

/// A permanent neighbour entry on the VXLAN device.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesiredNeighbour {
    /// The remote overlay gateway.
    pub ip: IpAddr,
    /// The remote VTEP's MAC.
    pub mac: [u8; 6],
}

/// An FDB entry on the VXLAN device.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesiredFdb {
    /// The remote VTEP's MAC.
    pub mac: [u8; 6],
    /// The remote VTEP's underlay address.
    pub dst: IpAddr,
}

/// Pod traffic leaving the cluster is masqueraded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Masquerade {
    /// Sources to masquerade: this node's pod CIDRs.
    pub pod_cidrs: Vec<IpNet>,
    /// Destinations exempt from masquerade, aggregated (no overlaps, which an
    /// interval set refuses).
    pub cluster_cidrs: Vec<IpNet>,
}

/// A stable, locally administered unicast MAC for `node_name`'s VTEP: the
/// first six bytes of SHA-256 of the name, with the multicast bit cleared and
/// the locally-administered bit set. Stable across restarts and reinstalls,
/// so peers' FDB and neighbour entries stay valid.
pub fn vtep_mac(node_name: &str) -> [u8; 6] {
    let digest = Sha256::digest(node_name.as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// The first host address of `net` (network + 1): the node's own address in
/// its pod CIDR, reserved by IPAM.
pub fn first_host(net: &IpNet) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).saturating_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).saturating_add(1))),
    }
}

/// The state node `cfg.node_name` should have, given the cluster and what
/// was observed locally. Pure: the same inputs always give the same value.
pub fn desired(view: &ClusterView, cfg: &AgentConfig, local: &LocalFacts) -> Desired {
    let me = view.nodes.iter().find(|n| n.name == cfg.node_name);
    if me.is_none() {
        warn!(node = %cfg.node_name, revision = view.revision, "this node is not in the view yet");
    }
    let own_cidrs: Vec<IpNet> = me.map(|n| n.pod_cidrs.clone()).unwrap_or_default();

    let vxlan = cfg
        .backend
        .uses_vxlan()
        .then(|| vtep_local(me, local))
        .flatten()
        .map(|local_ip| VxlanSpec {
            name: cfg.vxlan_dev.clone(),
            vni: cfg.vni,
            local: local_ip,
            port: cfg.vxlan_port,
            // Pinned to the underlay so encapsulated packets cannot leave
            // through another interface.
            underlay_index: Some(local.underlay_index),
            mtu: local.underlay_mtu.saturating_sub(overhead(local_ip)),
            mac: Some(local.vtep_mac),
            learning: false,
        });
    if cfg.backend.uses_vxlan() && vxlan.is_none() {
        warn!(underlay = %local.underlay_name, "underlay has no address: no VXLAN device");
    }

    let mut peers = Peers::default();
    for node in view.nodes.iter().filter(|n| n.name != cfg.node_name) {
        peers.add(node, cfg.backend, vxlan.as_ref(), local);
    }

    let vxlan_addrs = match vxlan {
        Some(_) => own_cidrs
            .iter()
            .map(|c| IpNet::from(first_host(c)))
            .collect(),
        None => Vec::new(),
    };

    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_BACKEND.to_string(), cfg.backend.to_string());
    if let Some(dev) = &vxlan {
        annotations.insert(ANNOTATION_VTEP_MAC.to_string(), format_mac(&local.vtep_mac));
        annotations.insert(ANNOTATION_VTEP_IP.to_string(), dev.local.to_string());
    }

    let pod_mtu = cfg.mtu.unwrap_or(match &vxlan {
        Some(dev) => dev.mtu,
        None => local.underlay_mtu,
    });

    let mut sysctls = vec![("net.ipv4.ip_forward".to_string(), "1".to_string())];
    if own_cidrs.iter().any(|c| matches!(c, IpNet::V6(_))) {
        sysctls.push(("net.ipv6.conf.all.forwarding".to_string(), "1".to_string()));
    }

    let cluster = if cfg.cluster_cidrs.is_empty() {
        view.nodes
            .iter()
            .flat_map(|n| n.pod_cidrs.clone())
            .collect()
    } else {
        cfg.cluster_cidrs.clone()
    };

    Desired {
        vxlan,
        vxlan_name: cfg.vxlan_dev.clone(),
        vxlan_addrs,
        routes: peers.routes.into_values().collect(),
        neighbours: peers.neighbours.into_iter().collect(),
        fdb: peers.fdb.into_iter().collect(),
        masquerade: Masquerade {
            pod_cidrs: IpNet::aggregate(&own_cidrs),
            cluster_cidrs: IpNet::aggregate(&cluster),
        },
        sysctls,
        annotations,
        pod_mtu,
        underlay_index: local.underlay_index,
        route_protocol: cfg.route_protocol,
    }
}

/// The VTEP's source address: the node's first model address of the
/// preferred family that is on the underlay, else the underlay's first
/// address of that family; IPv4 before IPv6.
fn vtep_local(me: Option<&Node>, local: &LocalFacts) -> Option<IpAddr> {
    let on_underlay = |a: &IpAddr| local.underlay_addrs.iter().any(|n| n.addr() == *a);
    for v4 in [true, false] {
        let model = me
            .into_iter()
            .flat_map(|n| n.addresses.iter())
            .find(|a| a.is_ipv4() == v4 && on_underlay(a));
        let observed = || {
            local
                .underlay_addrs
                .iter()
                .map(IpNet::addr)
                .find(|a| a.is_ipv4() == v4)
        };
        if let Some(a) = model.copied().or_else(observed) {
            return Some(a);
        }
    }
    None
}

fn overhead(local: IpAddr) -> u32 {
    if local.is_ipv4() {
        VXLAN_OVERHEAD_V4
    } else {
        VXLAN_OVERHEAD_V6
    }
}

/// A peer's published VTEP.
struct Vtep {
    mac: [u8; 6],
    ip: IpAddr,
}

/// The routes, neighbours and FDB entries towards other nodes, keyed so the
/// result is sorted and free of duplicates.
#[derive(Default)]
struct Peers {
    routes: BTreeMap<IpNet, DesiredRoute>,
    neighbours: std::collections::BTreeSet<DesiredNeighbour>,
    fdb: std::collections::BTreeSet<DesiredFdb>,
}

impl Peers {
    fn add(&mut self, node: &Node, backend: Backend, dev: Option<&VxlanSpec>, local: &LocalFacts) {
        // A node whose agent has not announced itself yet gets no route: its
        // side would drop or misroute the traffic.
        if !node.annotations.contains_key(ANNOTATION_BACKEND) {
            debug!(peer = %node.name, "peer has not published its backend yet: no route");
            return;
        }
        let vtep = dev.and_then(|dev| published_vtep(node, dev));
        for cidr in &node.pod_cidrs {
            let node_addr = node
                .addresses
                .iter()
                .copied()
                .find(|a| a.is_ipv4() == matches!(cidr, IpNet::V4(_)));
            let adjacent = node_addr.filter(|a| local.is_adjacent(*a));
            match (backend, adjacent, &vtep) {
                (Backend::HostGw | Backend::Auto, Some(gw), _) => self.host_gw(node, cidr, gw),
                (Backend::Vxlan | Backend::Auto, _, Some(vtep)) => self.vxlan(node, cidr, vtep),
                (Backend::HostGw, None, _) => warn!(
                    peer = %node.name, %cidr, address = ?node_addr,
                    "host-gw: the peer has no address of this family on the underlay segment: no route"
                ),
                (Backend::Vxlan | Backend::Auto, _, None) => debug!(
                    peer = %node.name, %cidr,
                    "peer has no usable VTEP published (and is not adjacent): no route"
                ),
            }
        }
    }

    fn insert(&mut self, node: &Node, route: DesiredRoute) {
        if let Some(old) = self.routes.get(&route.dst) {
            warn!(peer = %node.name, dst = %route.dst, kept = %old.gateway,
                "pod CIDR claimed by two nodes: keeping the first route");
            return;
        }
        self.routes.insert(route.dst, route);
    }

    fn host_gw(&mut self, node: &Node, cidr: &IpNet, gateway: IpAddr) {
        let route = DesiredRoute {
            dst: cidr.trunc(),
            gateway,
            dev: RouteDev::Underlay,
            onlink: false,
        };
        self.insert(node, route);
    }

    fn vxlan(&mut self, node: &Node, cidr: &IpNet, vtep: &Vtep) {
        let gateway = first_host(cidr);
        let route = DesiredRoute {
            dst: cidr.trunc(),
            gateway,
            dev: RouteDev::Vxlan,
            onlink: true,
        };
        self.insert(node, route);
        self.neighbours.insert(DesiredNeighbour {
            ip: gateway,
            mac: vtep.mac,
        });
        self.fdb.insert(DesiredFdb {
            mac: vtep.mac,
            dst: vtep.ip,
        });
    }
}

/// The peer's VTEP when it published a valid one that our device can reach
/// (same underlay family as our own VTEP).
fn published_vtep(node: &Node, dev: &VxlanSpec) -> Option<Vtep> {
    let mac = node.annotations.get(ANNOTATION_VTEP_MAC)?;
    let ip = node.annotations.get(ANNOTATION_VTEP_IP)?;
    let (Some(mac), Ok(ip)) = (parse_mac(mac), ip.parse::<IpAddr>()) else {
        warn!(peer = %node.name, %mac, %ip, "peer published an unreadable VTEP: ignored");
        return None;
    };
    if ip.is_ipv4() != dev.local.is_ipv4() {
        warn!(peer = %node.name, %ip, local = %dev.local,
            "peer's VTEP is of another address family than ours: unreachable over VXLAN");
        return None;
    }
    Some(Vtep { mac, ip })
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
