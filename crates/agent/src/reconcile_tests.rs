//! Unit tests of [`crate::reconcile`] against the in-memory kernel: the
//! diff, idempotence, adoption and cleanup of only weft's objects.

use weft_netlink::{FdbEntry, Neighbour, RT_TABLE_MAIN, Route, RouteScope};

use crate::config::{AgentConfig, Backend, ClusterView};
use crate::desired::{Desired, desired, vtep_mac};
use crate::error::Error;
use crate::fake::FakeKernel;
use crate::kernel::{Kernel, LinkState};
use crate::local::observe_local;
use crate::reconcile::reconcile;
use crate::testutil::{ip, local, net, node};

fn three_nodes() -> ClusterView {
    ClusterView {
        revision: 1,
        nodes: vec![
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
        ],
        pods: Vec::new(),
    }
}

fn want(view: &ClusterView, backend: Backend) -> Desired {
    let cfg = AgentConfig {
        backend,
        ..AgentConfig::new("n1")
    };
    desired(view, &cfg, &local("n1", &["192.168.1.1/24", "fd00::1/64"]))
}

fn kernel() -> FakeKernel {
    FakeKernel::with_underlay(2, "eth0", 1500, &[net("192.168.1.1/24"), net("fd00::1/64")])
}

fn vxlan_index(k: &mut FakeKernel) -> u32 {
    k.link("weft.vxlan").unwrap().unwrap().index
}

#[test]
fn first_reconcile_builds_everything_second_changes_nothing() {
    let mut k = kernel();
    let d = want(&three_nodes(), Backend::Vxlan);
    let r = reconcile(&mut k, &d).unwrap();
    // create + up; 2 addresses; 2 fdb; 4 neighbours; 4 routes; 2 sysctls; nft.
    assert_eq!(
        (
            r.links,
            r.addresses,
            r.fdb,
            r.neighbours,
            r.routes,
            r.sysctls,
            r.nft
        ),
        (2, 2, 2, 4, 4, 2, 1)
    );
    let dev = k.link("weft.vxlan").unwrap().unwrap();
    assert!(dev.up);
    assert_eq!((dev.mtu, dev.mac), (1450, Some(vtep_mac("n1"))));
    assert!(
        k.routes
            .iter()
            .all(|r| r.oif == Some(dev.index) && r.onlink)
    );

    k.changes.clear();
    let again = reconcile(&mut k, &d).unwrap();
    assert_eq!(again.changes(), 0, "{:?}", k.changes);
    assert!(k.changes.is_empty());
}

#[test]
fn restart_adopts_what_is_there() {
    let mut k = kernel();
    reconcile(&mut k, &want(&three_nodes(), Backend::Vxlan)).unwrap();
    // A new agent process: fresh decision over the same kernel.
    let mut restarted = k.clone();
    restarted.changes.clear();
    let r = reconcile(&mut restarted, &want(&three_nodes(), Backend::Vxlan)).unwrap();
    assert_eq!(r.changes(), 0, "{:?}", restarted.changes);
}

#[test]
fn removed_node_loses_route_neighbour_and_fdb() {
    let mut k = kernel();
    let mut v = three_nodes();
    reconcile(&mut k, &want(&v, Backend::Vxlan)).unwrap();
    v.nodes.retain(|n| n.name != "n3");
    k.changes.clear();
    let r = reconcile(&mut k, &want(&v, Backend::Vxlan)).unwrap();
    assert_eq!(
        (r.routes, r.neighbours, r.fdb, r.nft),
        (2, 2, 1, 1),
        "{:?}",
        k.changes
    );
    assert!(
        k.routes
            .iter()
            .all(|r| !r.dst.to_string().contains("244.3") && !r.dst.to_string().contains("244:3"))
    );
    assert!(k.fdb.iter().all(|e| e.mac != vtep_mac("n3")));
    assert_eq!(
        reconcile(&mut k, &want(&v, Backend::Vxlan))
            .unwrap()
            .changes(),
        0
    );
}

#[test]
fn foreign_objects_are_left_alone() {
    let mut k = kernel();
    // A pod route of the plugin (protocol boot) and a default route.
    let pod = Route::device(net("10.244.1.7/32"), 9);
    let default = Route::via(net("0.0.0.0/0"), ip("192.168.1.254"), 2);
    k.routes.extend([pod.clone(), default.clone()]);
    reconcile(&mut k, &want(&three_nodes(), Backend::Vxlan)).unwrap();
    let index = vxlan_index(&mut k);
    // A stale route of ours, a learned (non-permanent) neighbour and a stale
    // permanent one on our device.
    let stale = Route {
        protocol: 0x57,
        ..Route::via(net("10.244.9.0/24"), ip("10.244.9.1"), index)
    };
    k.routes.push(stale);
    let learned = Neighbour {
        index,
        ip: ip("10.244.8.1"),
        mac: [2, 0, 0, 0, 0, 8],
        permanent: false,
    };
    k.neighbours.push(learned.clone());
    k.neighbours.push(Neighbour {
        permanent: true,
        ip: ip("10.244.9.1"),
        ..learned.clone()
    });
    k.changes.clear();
    let r = reconcile(&mut k, &want(&three_nodes(), Backend::Vxlan)).unwrap();
    assert_eq!(
        (r.routes, r.neighbours, r.changes()),
        (1, 1, 2),
        "{:?}",
        k.changes
    );
    assert!(k.routes.contains(&pod) && k.routes.contains(&default));
    assert!(k.neighbours.contains(&learned));
}

#[test]
fn changed_peer_vtep_replaces_in_place() {
    let mut k = kernel();
    let mut v = three_nodes();
    reconcile(&mut k, &want(&v, Backend::Vxlan)).unwrap();
    v.nodes[1].annotations.insert(
        crate::config::ANNOTATION_VTEP_IP.into(),
        "192.168.1.22".into(),
    );
    k.changes.clear();
    let r = reconcile(&mut k, &want(&v, Backend::Vxlan)).unwrap();
    assert_eq!((r.fdb, r.changes()), (1, 1), "{:?}", k.changes);
    let index = vxlan_index(&mut k);
    assert!(k.fdb.contains(&FdbEntry {
        index,
        mac: vtep_mac("n2"),
        dst: ip("192.168.1.22")
    }));
}

#[test]
fn vni_change_recreates_mtu_change_does_not() {
    let mut k = kernel();
    let v = three_nodes();
    let mut d = want(&v, Backend::Vxlan);
    reconcile(&mut k, &d).unwrap();
    let old = vxlan_index(&mut k);

    d.vxlan.as_mut().unwrap().mtu = 1400;
    k.changes.clear();
    let r = reconcile(&mut k, &d).unwrap();
    assert_eq!((r.links, r.changes()), (1, 1), "{:?}", k.changes);
    assert_eq!(vxlan_index(&mut k), old);

    d.vxlan.as_mut().unwrap().vni = 42;
    let r = reconcile(&mut k, &d).unwrap();
    let new = vxlan_index(&mut k);
    assert_ne!(new, old);
    // delete + create + up, then everything on the device again.
    assert_eq!((r.links, r.fdb, r.neighbours, r.routes), (3, 2, 4, 4));
    assert_eq!(reconcile(&mut k, &d).unwrap().changes(), 0);
}

#[test]
fn switching_to_host_gw_removes_the_device_and_rewires_routes() {
    let mut k = kernel();
    let v = three_nodes();
    reconcile(&mut k, &want(&v, Backend::Vxlan)).unwrap();
    k.changes.clear();
    let d = want(&v, Backend::HostGw);
    reconcile(&mut k, &d).unwrap();
    assert!(k.link("weft.vxlan").unwrap().is_none());
    let mut routes: Vec<_> = k.routes.iter().map(|r| (r.dst, r.gateway, r.oif)).collect();
    routes.sort();
    assert_eq!(
        routes,
        vec![
            (net("10.244.2.0/24"), Some(ip("192.168.1.2")), Some(2)),
            (net("10.244.3.0/24"), Some(ip("192.168.1.3")), Some(2)),
            (net("fd00:10:244:2::/64"), Some(ip("fd00::2")), Some(2)),
            (net("fd00:10:244:3::/64"), Some(ip("fd00::3")), Some(2)),
        ]
    );
    assert!(k.routes.iter().all(|r| r.protocol == 0x57
        && r.table == RT_TABLE_MAIN
        && r.scope == RouteScope::Universe
        && !r.onlink));
    assert_eq!(reconcile(&mut k, &d).unwrap().changes(), 0);
}

#[test]
fn a_foreign_link_under_our_name_is_an_error() {
    let mut k = kernel();
    k.links.push(LinkState {
        index: 7,
        name: "weft.vxlan".into(),
        mtu: 1500,
        up: true,
        mac: None,
        kind: Some("dummy".into()),
        vxlan: None,
    });
    let err = reconcile(&mut k, &want(&three_nodes(), Backend::Vxlan)).unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(k.links.iter().any(|l| l.index == 7));
}

#[test]
fn underlay_is_the_link_holding_the_first_address() {
    let mut k = kernel();
    k.links.push(LinkState {
        index: 1,
        name: "lo".into(),
        mtu: 65536,
        up: true,
        mac: None,
        kind: None,
        vxlan: None,
    });
    k.addresses.insert(1, vec![net("127.0.0.1/8")]);
    k.addresses.get_mut(&2).unwrap().push(net("fe80::1/64"));
    let n1 = three_nodes().nodes.remove(0);
    let facts = observe_local(&mut k, &n1).unwrap();
    assert_eq!(facts, local("n1", &["192.168.1.1/24", "fd00::1/64"]));
    let mut lost = n1.clone();
    lost.addresses = vec![ip("192.168.5.5")];
    assert!(observe_local(&mut k, &lost).is_err());
}
