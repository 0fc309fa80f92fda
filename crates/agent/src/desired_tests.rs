//! Unit tests of [`crate::desired`]: the three backends, dual stack, peers
//! that have not published yet, and what this node publishes.

use weft_netlink::format_mac;

use crate::config::{
    ANNOTATION_BACKEND, ANNOTATION_VTEP_IP, ANNOTATION_VTEP_MAC, AgentConfig, Backend, ClusterView,
};
use crate::desired::{DesiredFdb, DesiredNeighbour, DesiredRoute, RouteDev, desired, vtep_mac};
use crate::testutil::{ip, local, net, node};

fn view(nodes: Vec<weft_model::Node>) -> ClusterView {
    ClusterView {
        revision: 1,
        nodes,
        pods: Vec::new(),
    }
}

fn cfg(backend: Backend) -> AgentConfig {
    AgentConfig {
        backend,
        ..AgentConfig::new("n1")
    }
}

fn vxlan_route(dst: &str, gw: &str) -> DesiredRoute {
    DesiredRoute {
        dst: net(dst),
        gateway: ip(gw),
        dev: RouteDev::Vxlan,
        onlink: true,
    }
}

fn hostgw_route(dst: &str, gw: &str) -> DesiredRoute {
    DesiredRoute {
        dst: net(dst),
        gateway: ip(gw),
        dev: RouteDev::Underlay,
        onlink: false,
    }
}

#[test]
fn vxlan_two_nodes() {
    let v = view(vec![
        node("n1", &["10.244.1.0/24"], &["192.168.1.1"], true),
        node("n2", &["10.244.2.0/24"], &["192.168.1.2"], true),
    ]);
    let d = desired(&v, &cfg(Backend::Vxlan), &local("n1", &["192.168.1.1/24"]));
    let dev = d.vxlan.as_ref().unwrap();
    assert_eq!(
        (dev.name.as_str(), dev.vni, dev.port, dev.local, dev.mtu),
        ("weft.vxlan", 1, 8472, ip("192.168.1.1"), 1450)
    );
    assert_eq!((dev.mac, dev.learning), (Some(vtep_mac("n1")), false));
    assert_eq!(d.vxlan_addrs, vec![net("10.244.1.1/32")]);
    assert_eq!(d.routes, vec![vxlan_route("10.244.2.0/24", "10.244.2.1")]);
    let mac2 = vtep_mac("n2");
    assert_eq!(
        d.neighbours,
        vec![DesiredNeighbour {
            ip: ip("10.244.2.1"),
            mac: mac2
        }]
    );
    assert_eq!(
        d.fdb,
        vec![DesiredFdb {
            mac: mac2,
            dst: ip("192.168.1.2")
        }]
    );
    assert_eq!(d.pod_mtu, 1450);
    assert_eq!(d.annotations[ANNOTATION_BACKEND], "vxlan");
    assert_eq!(
        d.annotations[ANNOTATION_VTEP_MAC],
        format_mac(&vtep_mac("n1"))
    );
    assert_eq!(d.annotations[ANNOTATION_VTEP_IP], "192.168.1.1");
    assert_eq!(d.masquerade.pod_cidrs, vec![net("10.244.1.0/24")]);
    assert_eq!(
        d.masquerade.cluster_cidrs,
        vec![net("10.244.1.0/24"), net("10.244.2.0/24")]
    );
    assert_eq!(d.sysctls, vec![("net.ipv4.ip_forward".into(), "1".into())]);
}

#[test]
fn peer_without_annotations_gets_no_route() {
    let v = view(vec![
        node("n1", &["10.244.1.0/24"], &["192.168.1.1"], true),
        node("n2", &["10.244.2.0/24"], &["192.168.1.2"], false),
    ]);
    for backend in [Backend::Vxlan, Backend::HostGw, Backend::Auto] {
        let d = desired(&v, &cfg(backend), &local("n1", &["192.168.1.1/24"]));
        assert!(d.routes.is_empty(), "{backend}");
        assert!(d.neighbours.is_empty() && d.fdb.is_empty(), "{backend}");
    }
}

#[test]
fn vxlan_three_nodes_dual_stack() {
    let v = view(vec![
        node(
            "n1",
            &["10.244.1.0/24", "fd00:10:244:1::/64"],
            &["192.168.1.1", "fd00::1"],
            true,
        ),
        node(
            "n2",
            &["10.244.2.0/24", "fd00:10:244:2::/64"],
            &["192.168.1.2", "fd00::2"],
            true,
        ),
        node(
            "n3",
            &["10.244.3.0/24", "fd00:10:244:3::/64"],
            &["192.168.1.3", "fd00::3"],
            true,
        ),
    ]);
    let d = desired(
        &v,
        &cfg(Backend::Vxlan),
        &local("n1", &["192.168.1.1/24", "fd00::1/64"]),
    );
    assert_eq!(d.vxlan.as_ref().unwrap().local, ip("192.168.1.1"));
    assert_eq!(
        d.vxlan_addrs,
        vec![net("10.244.1.1/32"), net("fd00:10:244:1::1/128")]
    );
    assert_eq!(
        d.routes,
        vec![
            vxlan_route("10.244.2.0/24", "10.244.2.1"),
            vxlan_route("10.244.3.0/24", "10.244.3.1"),
            vxlan_route("fd00:10:244:2::/64", "fd00:10:244:2::1"),
            vxlan_route("fd00:10:244:3::/64", "fd00:10:244:3::1"),
        ]
    );
    assert_eq!(d.neighbours.len(), 4);
    // One FDB entry per peer VTEP, whatever the number of pod CIDRs.
    assert_eq!(d.fdb.len(), 2);
    assert!(
        d.sysctls
            .contains(&("net.ipv6.conf.all.forwarding".into(), "1".into()))
    );
}

#[test]
fn ipv6_underlay_costs_70_bytes() {
    let v = view(vec![
        node("n1", &["fd00:10:244:1::/64"], &["fd00::1"], true),
        node("n2", &["fd00:10:244:2::/64"], &["fd00::2"], true),
    ]);
    let d = desired(&v, &cfg(Backend::Vxlan), &local("n1", &["fd00::1/64"]));
    let dev = d.vxlan.as_ref().unwrap();
    assert_eq!((dev.local, dev.mtu, d.pod_mtu), (ip("fd00::1"), 1430, 1430));
    assert_eq!(d.fdb[0].dst, ip("fd00::2"));
}

#[test]
fn host_gw_routes_via_node_addresses() {
    let v = view(vec![
        node(
            "n1",
            &["10.244.1.0/24", "fd00:10:244:1::/64"],
            &["192.168.1.1", "fd00::1"],
            true,
        ),
        node(
            "n2",
            &["10.244.2.0/24", "fd00:10:244:2::/64"],
            &["192.168.1.2", "fd00::2"],
            true,
        ),
        // No IPv6 node address: its v6 pod CIDR cannot be routed (warned).
        node(
            "n3",
            &["10.244.3.0/24", "fd00:10:244:3::/64"],
            &["192.168.1.3"],
            true,
        ),
    ]);
    let d = desired(
        &v,
        &cfg(Backend::HostGw),
        &local("n1", &["192.168.1.1/24", "fd00::1/64"]),
    );
    assert_eq!(d.vxlan, None);
    assert!(d.vxlan_addrs.is_empty() && d.neighbours.is_empty() && d.fdb.is_empty());
    assert_eq!(
        d.routes,
        vec![
            hostgw_route("10.244.2.0/24", "192.168.1.2"),
            hostgw_route("10.244.3.0/24", "192.168.1.3"),
            hostgw_route("fd00:10:244:2::/64", "fd00::2"),
        ]
    );
    assert_eq!(d.pod_mtu, 1500);
    assert_eq!(d.annotations[ANNOTATION_BACKEND], "host-gw");
    assert!(!d.annotations.contains_key(ANNOTATION_VTEP_MAC));
}

#[test]
fn auto_chooses_per_peer_and_family() {
    let v = view(vec![
        node(
            "n1",
            &["10.244.1.0/24", "fd00:10:244:1::/64"],
            &["192.168.1.1", "fd00::1"],
            true,
        ),
        // Same segment, but no IPv6 address: v4 host-gw, v6 over VXLAN.
        node(
            "n2",
            &["10.244.2.0/24", "fd00:10:244:2::/64"],
            &["192.168.1.2"],
            true,
        ),
        // Another segment: VXLAN for both.
        node(
            "n3",
            &["10.244.3.0/24", "fd00:10:244:3::/64"],
            &["192.168.7.3", "fd07::3"],
            true,
        ),
    ]);
    let d = desired(
        &v,
        &cfg(Backend::Auto),
        &local("n1", &["192.168.1.1/24", "fd00::1/64"]),
    );
    assert_eq!(
        d.routes,
        vec![
            hostgw_route("10.244.2.0/24", "192.168.1.2"),
            vxlan_route("10.244.3.0/24", "10.244.3.1"),
            vxlan_route("fd00:10:244:2::/64", "fd00:10:244:2::1"),
            vxlan_route("fd00:10:244:3::/64", "fd00:10:244:3::1"),
        ]
    );
    let mut vteps: Vec<_> = d.fdb.iter().map(|f| f.dst).collect();
    vteps.sort();
    assert_eq!(vteps, vec![ip("192.168.1.2"), ip("192.168.7.3")]);
    // auto always keeps the device and the reduced MTU.
    assert!(d.vxlan.is_some());
    assert_eq!(d.pod_mtu, 1450);
}

#[test]
fn overrides_win() {
    let v = view(vec![node("n1", &["10.244.1.0/24"], &["192.168.1.1"], true)]);
    let mut c = cfg(Backend::Vxlan);
    c.mtu = Some(1300);
    c.cluster_cidrs = vec![net("10.0.0.0/8"), net("10.244.0.0/16")];
    let d = desired(&v, &c, &local("n1", &["192.168.1.1/24"]));
    assert_eq!(d.pod_mtu, 1300);
    // Overlapping CIDRs are merged: an interval set refuses overlaps.
    assert_eq!(d.masquerade.cluster_cidrs, vec![net("10.0.0.0/8")]);
}

#[test]
fn unusable_vtep_is_ignored() {
    let mut n2 = node("n2", &["10.244.2.0/24"], &["192.168.1.2"], true);
    n2.annotations
        .insert(ANNOTATION_VTEP_MAC.into(), "not-a-mac".into());
    let mut n3 = node("n3", &["10.244.3.0/24"], &["fd00::3"], true);
    n3.annotations
        .insert(ANNOTATION_VTEP_IP.into(), "fd00::3".into());
    let v = view(vec![
        node("n1", &["10.244.1.0/24"], &["192.168.1.1"], true),
        n2,
        n3,
    ]);
    let d = desired(&v, &cfg(Backend::Vxlan), &local("n1", &["192.168.1.1/24"]));
    assert!(d.routes.is_empty());
}

#[test]
fn vtep_mac_is_stable_unicast_and_local() {
    let a = vtep_mac("node-a");
    assert_eq!(a, vtep_mac("node-a"));
    assert_ne!(a, vtep_mac("node-b"));
    assert_eq!(a[0] & 0x01, 0, "unicast");
    assert_eq!(a[0] & 0x02, 0x02, "locally administered");
}

#[test]
fn decision_is_deterministic() {
    let nodes = vec![
        node("n1", &["10.244.1.0/24"], &["192.168.1.1"], true),
        node("n3", &["10.244.3.0/24"], &["192.168.1.3"], true),
        node("n2", &["10.244.2.0/24"], &["192.168.1.2"], true),
    ];
    let mut reversed = nodes.clone();
    reversed.reverse();
    let l = local("n1", &["192.168.1.1/24"]);
    assert_eq!(
        desired(&view(nodes), &cfg(Backend::Vxlan), &l),
        desired(&view(reversed), &cfg(Backend::Vxlan), &l)
    );
}
