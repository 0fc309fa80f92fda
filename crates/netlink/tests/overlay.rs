//! Kernel tests for the overlay: VXLAN devices, their static FDB entries,
//! and neighbour and route entries that together carry traffic between two
//! namespaces ("nodes") joined by a veth underlay. Everything runs inside
//! namespaces created by weft-testkit, never in the root namespace. Needs
//! root; otherwise each test reports a loud SKIP.

use std::net::IpAddr;

use ipnet::IpNet;
use weft_netlink::{
    Batch, Error, Family, FdbEntry, Handle, Neighbour, Route, VxlanInfo, VxlanSpec,
};
use weft_testkit::{NetNs, privileged, veth_between};

/// The protocol number the agent tags its routes with.
const WEFT_PROTO: u8 = 0x57;
const VNI: u32 = 4242;
const PORT: u16 = 4789;
const VX: &str = "weftvx0";

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One node of the overlay: its namespace and the addresses other nodes
/// program towards it.
struct Node {
    ns: NetNs,
    /// ifindex of the VXLAN device inside `ns`.
    vx: u32,
    /// The VXLAN device's MAC (the VTEP MAC).
    mac: [u8; 6],
    /// Underlay address, on `ul0`.
    underlay: IpAddr,
    /// IPv4 and IPv6 addresses of the VXLAN device (the VTEP addresses).
    vtep4: IpAddr,
    vtep6: IpAddr,
    /// The node's pod CIDRs, which the VTEP addresses belong to.
    pods4: IpNet,
    pods6: IpNet,
}

fn spec(local: IpAddr, underlay_index: Option<u32>, mac: [u8; 6]) -> VxlanSpec {
    VxlanSpec {
        name: VX.into(),
        vni: VNI,
        local,
        port: PORT,
        underlay_index,
        mtu: 1450,
        mac: Some(mac),
        learning: false,
    }
}

/// Two nodes joined by a veth underlay (`ul0` in each, 192.168.77.0/24),
/// each with an up VXLAN device carrying its VTEP addresses. Nothing is
/// programmed towards the other node yet.
fn two_nodes() -> (Node, Node) {
    let a = NetNs::new("ov").unwrap();
    let b = NetNs::new("ov").unwrap();
    veth_between(&a, "ul0", &b, "ul0").unwrap();
    let a = node(a, 1);
    let b = node(b, 2);
    (a, b)
}

/// Sets up node `n` (1 or 2) in `ns`.
fn node(ns: NetNs, n: u8) -> Node {
    let underlay = ip(&format!("192.168.77.{n}"));
    let mac = [0x02, 0x77, 0x65, 0x66, 0x74, n];
    let (vtep4, vtep6) = (ip(&format!("10.244.{n}.0")), ip(&format!("fd77:{n}::1")));
    let vx = ns
        .run(|| {
            let mut h = Handle::new().unwrap();
            let ul = h.link("ul0").unwrap().expect("underlay veth").index;
            h.add_address(ul, IpNet::new(underlay, 24).unwrap(), true)
                .unwrap();
            h.create_vxlan(&spec(underlay, Some(ul), mac)).unwrap();
            let (link, _) = h.vxlan(VX).unwrap().expect("just created");
            let mut b = Batch::new();
            b.add_address(link.index, IpNet::new(vtep4, 32).unwrap(), true)
                .add_address(link.index, IpNet::new(vtep6, 128).unwrap(), true)
                .set_up(link.index);
            h.apply(&b).unwrap();
            link.index
        })
        .unwrap();
    Node {
        ns,
        vx,
        mac,
        underlay,
        vtep4,
        vtep6,
        pods4: net(&format!("10.244.{n}.0/24")),
        pods6: net(&format!("fd77:{n}::/64")),
    }
}

impl Node {
    fn fdb_to(&self, peer: &Node) -> FdbEntry {
        FdbEntry {
            index: self.vx,
            mac: peer.mac,
            dst: peer.underlay,
        }
    }

    /// The route to `peer`'s pods of one family: via its VTEP address,
    /// onlink (no address here covers it), tagged with weft's protocol.
    fn route_to(&self, peer: &Node, v6: bool) -> Route {
        let (dst, gw) = if v6 {
            (peer.pods6, peer.vtep6)
        } else {
            (peer.pods4, peer.vtep4)
        };
        Route {
            onlink: true,
            protocol: WEFT_PROTO,
            ..Route::via(dst, gw, self.vx)
        }
    }

    fn neighbour(&self, peer: &Node, ip: IpAddr) -> Neighbour {
        Neighbour {
            index: self.vx,
            ip,
            mac: peer.mac,
            permanent: true,
        }
    }

    /// What the agent programs per remote node, in one batch.
    fn program(&self, peer: &Node) {
        let mut b = Batch::new();
        b.add_fdb(&self.fdb_to(peer))
            .add_neighbour(&self.neighbour(peer, peer.vtep4))
            .add_neighbour(&self.neighbour(peer, peer.vtep6))
            .replace_route(&self.route_to(peer, false))
            .replace_route(&self.route_to(peer, true));
        self.ns
            .run(|| Handle::new().unwrap().apply(&b))
            .unwrap()
            .unwrap();
    }

    /// Whether one ping from here to `to` is answered.
    fn pings(&self, to: IpAddr) -> bool {
        let to = to.to_string();
        self.ns
            .exec("ping", &["-n", "-c", "1", "-W", "2", &to])
            .is_ok()
    }

    /// Packets sent by the VXLAN device, as iproute2 reports them.
    fn vx_tx_packets(&self) -> u64 {
        let out = self.ns.ip(&["-s", "-o", "link", "show", VX]).unwrap();
        // "... TX: bytes packets errors ...\    <bytes> <packets> ..."
        let tx = out.split("TX:").nth(1).expect("TX statistics");
        let numbers = tx.split('\\').nth(1).expect("TX values");
        numbers.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

#[test]
fn overlay_carries_ipv4_and_ipv6_inner_over_ipv4_underlay() {
    if !privileged("overlay_carries_ipv4_and_ipv6_inner_over_ipv4_underlay") {
        return;
    }
    let (a, b) = two_nodes();
    // Nothing programmed: no route to the other node's pods.
    assert!(!a.pings(b.vtep4));
    a.program(&b);
    b.program(&a);

    let before = a.vx_tx_packets();
    assert!(a.pings(b.vtep4), "IPv4 over the VXLAN overlay");
    assert!(a.pings(b.vtep6), "IPv6 inner over the IPv4 underlay");
    assert!(b.pings(a.vtep4) && b.pings(a.vtep6), "and back");
    // The underlay has no route to the pod CIDRs: the traffic went through
    // the VXLAN device.
    assert!(a.vx_tx_packets() >= before + 2);

    // Without the FDB entry the device has nowhere to send the frame.
    let fdb = a.fdb_to(&b);
    a.ns.run(|| Handle::new().unwrap().delete_fdb(&fdb))
        .unwrap()
        .unwrap();
    assert!(!a.pings(b.vtep4), "no FDB entry, no overlay");
    a.program(&b);
    assert!(a.pings(b.vtep4), "programming again is idempotent");

    // The routes come back tagged with weft's protocol; the kernel's own
    // (the VTEP addresses' local and prefix routes) do not.
    let (r4, r6) = (a.route_to(&b, false), a.route_to(&b, true));
    a.ns.run(|| {
        let mut h = Handle::new().unwrap();
        assert_eq!(
            h.routes_with_protocol(Family::V4, WEFT_PROTO).unwrap(),
            std::slice::from_ref(&r4)
        );
        assert_eq!(
            h.routes_with_protocol(Family::V6, WEFT_PROTO).unwrap(),
            std::slice::from_ref(&r6)
        );
        assert!(h.routes(Family::V4).unwrap().contains(&r4));
    })
    .unwrap();
}

#[test]
fn batch_deletes_what_program_added() {
    if !privileged("batch_deletes_what_program_added") {
        return;
    }
    let (a, b) = two_nodes();
    a.program(&b);
    let (fdb, r4, r6) = (a.fdb_to(&b), a.route_to(&b, false), a.route_to(&b, true));
    a.ns.run(|| {
        let mut h = Handle::new().unwrap();
        let mut del = Batch::new();
        del.delete_route(&r4)
            .delete_route(&r6)
            .delete_neighbour(a.vx, b.vtep4)
            .delete_neighbour(a.vx, b.vtep6)
            .delete_fdb(&fdb);
        h.apply(&del).unwrap();
        assert_eq!(h.routes_with_protocol(Family::V4, WEFT_PROTO).unwrap(), []);
        assert_eq!(h.routes_with_protocol(Family::V6, WEFT_PROTO).unwrap(), []);
        // Only the permanent entries are ours: the kernel may add its own
        // for the device's IPv6 multicast (solicited-node) addresses.
        let ours: Vec<_> = h
            .neighbours(a.vx)
            .unwrap()
            .into_iter()
            .filter(|n| n.permanent)
            .collect();
        assert_eq!(ours, []);
        assert_eq!(h.fdb(a.vx).unwrap(), []);

        // Deleting again: every request reports not-found, by name.
        let results = h.apply_each(&del);
        assert_eq!(results.len(), 5);
        for r in results {
            let e = r.unwrap_err();
            assert!(e.is_not_found(), "{e}");
        }
        let e = h.apply(&del).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("delete route 10.244.2.0/24 via 10.244.2.0"),
            "{e}"
        );
    })
    .unwrap();
}

#[test]
fn fdb_list_replace_and_delete() {
    if !privileged("fdb_list_replace_and_delete") {
        return;
    }
    let ns = NetNs::new("ov").unwrap();
    ns.run(|| {
        let mut h = Handle::new().unwrap();
        h.create_vxlan(&spec(ip("192.168.77.1"), None, [2, 0, 0, 0, 0, 1]))
            .unwrap();
        let mut other = spec(ip("192.168.77.1"), None, [2, 0, 0, 0, 0, 2]);
        other.name = "weftvx1".into();
        other.vni = VNI + 1;
        h.create_vxlan(&other).unwrap();
        let vx = h.vxlan(VX).unwrap().unwrap().0.index;
        let vx1 = h.vxlan("weftvx1").unwrap().unwrap().0.index;
        assert_eq!(h.fdb(vx).unwrap(), [], "no remote: no default entry");

        let e1 = FdbEntry {
            index: vx,
            mac: [2, 0, 0, 0, 1, 1],
            dst: ip("192.168.77.2"),
        };
        let e2 = FdbEntry {
            mac: [2, 0, 0, 0, 1, 2],
            dst: ip("192.168.77.3"),
            ..e1.clone()
        };
        let elsewhere = FdbEntry {
            index: vx1,
            ..e1.clone()
        };
        h.add_fdb(&e1).unwrap();
        h.add_fdb(&e1).unwrap(); // repeated ADD: no error
        h.add_fdb(&e2).unwrap();
        h.add_fdb(&elsewhere).unwrap();
        let mut got = h.fdb(vx).unwrap();
        got.sort_by_key(|e| e.mac);
        assert_eq!(got, [e1.clone(), e2.clone()], "only this device's entries");
        assert_eq!(h.fdb(vx1).unwrap(), [elsewhere]);

        // The node behind e1's MAC moved: replace follows it.
        let moved = FdbEntry {
            dst: ip("192.168.77.9"),
            ..e1.clone()
        };
        h.add_fdb(&moved).unwrap();
        let mut got = h.fdb(vx).unwrap();
        got.sort_by_key(|e| e.mac);
        assert_eq!(got, [moved.clone(), e2.clone()]);

        h.delete_fdb(&moved).unwrap();
        assert_eq!(h.fdb(vx).unwrap(), [e2]);
        let e = h.delete_fdb(&moved).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(
            e.to_string()
                .starts_with("delete fdb 02:00:00:00:01:01 dst 192.168.77.9"),
            "{e}"
        );
    })
    .unwrap();
    // Cross-check with iproute2.
    let out = ns.exec("bridge", &["fdb", "show", "dev", VX]).unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("02:00:00:00:01:02 dst 192.168.77.3 self permanent"),
        "{out}"
    );
}

#[test]
fn create_vxlan_reports_the_spec_back_and_refuses_duplicates() {
    if !privileged("create_vxlan_reports_the_spec_back_and_refuses_duplicates") {
        return;
    }
    let ns = NetNs::new("ov").unwrap();
    // A veth pair inside the namespace stands for the underlay NIC (this
    // kernel has no dummy driver).
    ns.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"])
        .unwrap();
    ns.run(|| {
        let mut h = Handle::new().unwrap();
        let ul = h.link("ul0").unwrap().unwrap().index;
        let s = spec(ip("192.168.77.1"), Some(ul), [2, 0, 0, 0, 0, 1]);
        assert_eq!(h.vxlan(VX).unwrap(), None);
        h.create_vxlan(&s).unwrap();
        let (link, info) = h.vxlan(VX).unwrap().expect("created");
        assert_eq!(info, s.info());
        assert_eq!(
            info,
            VxlanInfo {
                vni: VNI,
                local: Some(ip("192.168.77.1")),
                port: PORT,
                underlay_index: Some(ul),
                learning: false,
            }
        );
        assert_eq!((link.mtu, link.mac), (1450, s.mac));
        assert_eq!(link.kind.as_deref(), Some("vxlan"));
        assert!(!link.up, "created down");

        let e = h.create_vxlan(&s).unwrap_err();
        assert!(e.is_exists(), "{e}");
        assert!(
            e.to_string().starts_with("create vxlan weftvx0 id 4242"),
            "{e}"
        );

        // An IPv6 underlay, no underlay device, learning on, kernel MAC and
        // MTU.
        let s6 = VxlanSpec {
            name: "weftvx6".into(),
            vni: VNI + 6,
            local: ip("fd00:77::1"),
            underlay_index: None,
            mtu: 0,
            mac: None,
            learning: true,
            ..s.clone()
        };
        h.create_vxlan(&s6).unwrap();
        let (link6, info6) = h.vxlan("weftvx6").unwrap().unwrap();
        assert_eq!(info6, s6.info());
        assert!(link6.mac.is_some(), "the kernel picked a MAC");

        // More than the underlay's MTU minus the overhead (1500 - 50) is
        // lowered by the kernel, not refused.
        let too_big = VxlanSpec {
            name: "weftvx2".into(),
            vni: VNI + 2,
            mtu: 1500,
            ..s.clone()
        };
        h.create_vxlan(&too_big).unwrap();
        assert_eq!(h.vxlan("weftvx2").unwrap().unwrap().0.mtu, 1450);

        // A name taken by another kind of link is not adopted.
        let e = h.vxlan("ul0").unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        assert!(e.to_string().contains("kind veth"), "{e}");
    })
    .unwrap();
    let out = ns.ip(&["-d", "link", "show", VX]).unwrap();
    assert!(
        out.contains("vxlan id 4242 local 192.168.77.1 dev ul0"),
        "{out}"
    );
    assert!(out.contains("dstport 4789 nolearning"), "{out}");
}
