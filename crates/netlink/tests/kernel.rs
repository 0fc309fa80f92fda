//! Kernel tests: every operation runs inside network namespaces created by
//! weft-testkit (a "host" and a "pod" namespace per test), never in the root
//! namespace. Needs root; otherwise each test reports a loud SKIP.

use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use ipnet::IpNet;
use weft_netlink::{
    Batch, Error, Family, Handle, Neighbour, Netns, NetnsGuard, Route, RouteScope, VethEnd,
    format_mac, sysctl_get, sysctl_get_in, sysctl_set, sysctl_set_in,
};
use weft_testkit::{NetNs, privileged};

const HOST_MAC: [u8; 6] = [0x02, 0x77, 0x65, 0x66, 0x74, 0x01];
const POD_MAC: [u8; 6] = [0x02, 0x77, 0x65, 0x66, 0x74, 0x02];

fn host_end(name: &str) -> VethEnd {
    VethEnd {
        name: name.into(),
        mac: HOST_MAC,
        mtu: 1450,
        alias: Some("default/pod-a eth0".into()),
    }
}

fn pod_end() -> VethEnd {
    VethEnd {
        name: "eth0".into(),
        mac: POD_MAC,
        mtu: 1450,
        alias: Some("weft pod side".into()),
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Two fresh namespaces: (host, pod).
fn pair() -> (NetNs, NetNs) {
    (NetNs::new("nl").unwrap(), NetNs::new("nl").unwrap())
}

/// Creates host end `name` in the calling thread's namespace with its peer
/// `eth0` in `pod`, both up when `up`; returns (host index, pod index).
fn veth(h: &mut Handle, name: &str, pod: &NetNs, up: bool) -> (u32, u32) {
    let pod_ns = Netns::open(pod.path()).unwrap();
    if up {
        h.create_veth_host_up(&host_end(name), &pod_end(), &pod_ns)
            .unwrap();
    } else {
        h.create_veth(&host_end(name), &pod_end(), &pod_ns).unwrap();
    }
    let host = h.link(name).unwrap().expect("host end exists");
    let mut p = Handle::in_netns(&pod_ns).unwrap();
    let peer = p
        .link("eth0")
        .unwrap()
        .expect("peer exists in the pod netns");
    if up {
        p.set_up(peer.index).unwrap();
    }
    (host.index, peer.index)
}

#[test]
fn veth_peer_is_created_inside_its_netns() {
    if !privileged("veth_peer_is_created_inside_its_netns") {
        return;
    }
    let (host, pod) = pair();
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let pod_ns = Netns::open(pod.path()).unwrap();
        h.create_veth(&host_end("weftv0"), &pod_end(), &pod_ns)
            .unwrap();

        let link = h.link("weftv0").unwrap().expect("host end");
        assert_eq!(link.mac, Some(HOST_MAC));
        assert_eq!(link.mtu, 1450);
        assert_eq!(link.alias.as_deref(), Some("default/pod-a eth0"));
        assert_eq!(link.kind.as_deref(), Some("veth"));
        assert!(!link.up);
        assert!(link.link_netnsid.is_some(), "peer lives in another netns");
        // The peer never existed here.
        assert_eq!(h.link("eth0").unwrap(), None);

        let mut p = Handle::in_netns(&pod_ns).unwrap();
        let peer = p.link("eth0").unwrap().expect("peer in pod netns");
        assert_eq!(peer.mac, Some(POD_MAC));
        assert_eq!(peer.mtu, 1450);
        assert_eq!(peer.alias.as_deref(), Some("weft pod side"));
        assert_eq!(peer.kind.as_deref(), Some("veth"));
        assert_eq!(link.peer_index, Some(peer.index));
        assert_eq!(peer.peer_index, Some(link.index));
        assert_eq!(p.link("weftv0").unwrap(), None);
    })
    .unwrap();
    // Cross-check with iproute2 from outside the crate.
    let out = pod.ip(&["-o", "link", "show", "eth0"]).unwrap();
    assert!(out.contains(&format_mac(&POD_MAC)), "{out}");
    assert!(host.ip(&["-o", "link", "show", "eth0"]).is_err());
}

#[test]
fn create_veth_echo_reports_both_indexes() {
    if !privileged("create_veth_echo_reports_both_indexes") {
        return;
    }
    let (host, pod) = pair();
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let pod_ns = Netns::open(pod.path()).unwrap();
        let echoed = h
            .create_veth_echo(&host_end("wefte0"), &pod_end(), &pod_ns, true)
            .unwrap()
            .expect("this kernel (6.3+) echoes RTM_NEWLINK");
        let link = h.link("wefte0").unwrap().expect("host end");
        assert_eq!(echoed.index, link.index);
        assert!(echoed.up, "host end created up");
        let mut p = Handle::in_netns(&pod_ns).unwrap();
        let peer = p.link("eth0").unwrap().expect("peer in pod netns");
        assert_eq!(echoed.peer_index, Some(peer.index));
    })
    .unwrap();
}

#[test]
fn create_veth_host_up_and_errors() {
    if !privileged("create_veth_host_up_and_errors") {
        return;
    }
    let (host, pod) = pair();
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let pod_ns = Netns::open(pod.path()).unwrap();
        h.create_veth_host_up(&host_end("weftv1"), &pod_end(), &pod_ns)
            .unwrap();
        let link = h.link("weftv1").unwrap().unwrap();
        assert!(link.up, "host end up from the creating request");
        assert_eq!(link.alias.as_deref(), Some("default/pod-a eth0"));
        let mut p = Handle::in_netns(&pod_ns).unwrap();
        let peer = p.link("eth0").unwrap().unwrap();
        assert!(!peer.up, "the peer cannot be created up");
        p.set_up(peer.index).unwrap();
        assert!(p.link_by_index(peer.index).unwrap().unwrap().up);

        // The same names again: EEXIST, and the error names the operation.
        let e = h
            .create_veth(&host_end("weftv1"), &pod_end(), &pod_ns)
            .unwrap_err();
        assert!(e.is_exists(), "{e}");
        assert!(e.to_string().starts_with("create veth weftv1"), "{e}");

        // Names are checked before anything is sent.
        let long = host_end("weft-name-too-long");
        let e = h.create_veth(&long, &pod_end(), &pod_ns).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    })
    .unwrap();
}

#[test]
fn link_lookup_dump_up_and_delete() {
    if !privileged("link_lookup_dump_up_and_delete") {
        return;
    }
    let (host, pod) = pair();
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let (hi, _) = veth(&mut h, "weftv2", &pod, false);

        let by_index = h.link_by_index(hi).unwrap().unwrap();
        assert_eq!(by_index.name, "weftv2");
        let all = h.links().unwrap();
        let names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
        assert!(
            names.contains(&"lo") && names.contains(&"weftv2"),
            "{names:?}"
        );
        assert_eq!(all.iter().find(|l| l.index == hi), Some(&by_index));

        h.set_up(hi).unwrap();
        assert!(h.link_by_index(hi).unwrap().unwrap().up);

        h.delete_link(hi).unwrap();
        assert_eq!(h.link("weftv2").unwrap(), None);
        assert_eq!(h.link_by_index(hi).unwrap(), None);
        let e = h.delete_link(hi).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(e.to_string().starts_with("delete link"), "{e}");
        let e = h.set_up(hi).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    })
    .unwrap();
    // Deleting one end removed the peer in the pod too.
    let out = pod.ip(&["-o", "link"]).unwrap();
    assert!(!out.contains("eth0"), "{out}");
}

#[test]
fn dump_spanning_many_datagrams() {
    if !privileged("dump_spanning_many_datagrams") {
        return;
    }
    let (host, pod) = pair();
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let pod_ns = Netns::open(pod.path()).unwrap();
        for i in 0..150u8 {
            let mut a = host_end(&format!("weftd{i}"));
            a.mac[5] = i;
            let mut b = pod_end();
            b.name = format!("p{i}");
            b.mac[5] = i;
            h.create_veth(&a, &b, &pod_ns).unwrap();
        }
        let links = h.links().unwrap();
        assert_eq!(links.len(), 151, "lo + 150 host ends");

        // A receive buffer too small for one datagram: the truncated dump is
        // drained, the buffer grows and the dump is asked for again.
        h.set_recv_capacity_for_tests(256);
        assert_eq!(h.links().unwrap(), links);
        h.set_recv_capacity_for_tests(256);
        assert_eq!(
            h.link("weftd7").unwrap().as_ref(),
            links.iter().find(|l| l.name == "weftd7")
        );
        // An ACK echoes only our header (NETLINK_CAP_ACK): 36 bytes.
        h.set_recv_capacity_for_tests(64);
        h.set_up(links[1].index).unwrap();
        assert_eq!(
            Handle::in_netns(&pod_ns).unwrap().links().unwrap().len(),
            151
        );
    })
    .unwrap();
}

#[test]
fn addresses_v4_and_v6_nodad() {
    if !privileged("addresses_v4_and_v6_nodad") {
        return;
    }
    let (host, pod) = pair();
    pod.run(|| {
        let mut h = Handle::new().unwrap();
        let pod_ns = Netns::current().unwrap();
        // Build the pair from the pod side this time: the "peer" lands in
        // the host namespace. Only the addresses matter here.
        let host_ns = Netns::open(host.path()).unwrap();
        let mut me = pod_end();
        me.name = "eth0".into();
        let mut other = host_end("weftv3");
        other.alias = None;
        h.create_veth_host_up(&me, &other, &host_ns).unwrap();
        assert!(!pod_ns.is_same_as(&host_ns).unwrap());
        let idx = h.link("eth0").unwrap().unwrap().index;

        h.add_address(idx, net("10.244.1.5/32"), true).unwrap();
        h.add_address(idx, net("fd00:244:1::5/128"), true).unwrap();
        let addrs = h.addresses(idx).unwrap();
        assert!(addrs.contains(&net("10.244.1.5/32")), "{addrs:?}");
        assert!(addrs.contains(&net("fd00:244:1::5/128")), "{addrs:?}");
        // Another link's addresses are not listed.
        assert!(
            h.addresses(1)
                .unwrap()
                .iter()
                .all(|a| a.addr().is_loopback())
        );

        let e = h.add_address(idx, net("10.244.1.5/32"), false).unwrap_err();
        assert!(e.is_exists(), "{e}");

        h.delete_address(idx, net("10.244.1.5/32")).unwrap();
        let e = h.delete_address(idx, net("10.244.1.5/32")).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(!h.addresses(idx).unwrap().contains(&net("10.244.1.5/32")));
    })
    .unwrap();
    // NODAD: the v6 address is never tentative.
    let out = pod
        .ip(&["-6", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(out.contains("fd00:244:1::5/128"), "{out}");
    assert!(!out.contains("tentative"), "{out}");
}

#[test]
fn routes_add_list_replace_delete() {
    if !privileged("routes_add_list_replace_delete") {
        return;
    }
    let (host, pod) = pair();
    let (hi, pi) = host
        .run(|| veth(&mut Handle::new().unwrap(), "weftv4", &pod, true))
        .unwrap();

    // Host side: a link-scope /32 (and /128) to the pod.
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let v4 = Route::device(net("10.244.1.5/32"), hi);
        let v6 = Route::device(net("fd00:244:1::5/128"), hi);
        h.add_route(&v4).unwrap();
        h.add_route(&v6).unwrap();
        let routes = h.routes(Family::V4).unwrap();
        assert!(routes.contains(&v4), "{routes:?}");
        // IPv6 has no route scopes: the kernel reports universe.
        let v6_read = Route {
            scope: RouteScope::Universe,
            ..v6.clone()
        };
        let routes6 = h.routes(Family::V6).unwrap();
        assert!(routes6.contains(&v6_read), "{routes6:?}");
        assert!(routes6.iter().all(|r| r.family() == Family::V6));

        let e = h.add_route(&v4).unwrap_err();
        assert!(e.is_exists(), "{e}");
        assert!(e.to_string().starts_with("add route 10.244.1.5/32"), "{e}");

        let mut v4_mtu = v4.clone();
        v4_mtu.mtu = Some(1400);
        h.replace_route(&v4_mtu).unwrap();
        assert!(h.routes(Family::V4).unwrap().contains(&v4_mtu));

        h.delete_route(&v4_mtu).unwrap();
        let e = h.delete_route(&v4).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(
            !h.routes(Family::V4)
                .unwrap()
                .iter()
                .any(|r| r.dst == v4.dst)
        );
        h.delete_route(&v6).unwrap();
    })
    .unwrap();

    // Pod side: default routes via link-local gateways.
    pod.run(|| {
        let mut h = Handle::new().unwrap();
        let mut gw4 = Route::via(net("0.0.0.0/0"), ip("169.254.1.1"), pi);
        // Without onlink the kernel refuses: no route covers the gateway.
        let e = h.add_route(&gw4).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENETUNREACH), "{e}");
        eprintln!("expected refusal: {e}");
        gw4.onlink = true;
        h.add_route(&gw4).unwrap();
        let gw6 = Route::via(net("::/0"), ip("fe80::1"), pi);
        h.add_route(&gw6).unwrap();

        assert!(h.routes(Family::V4).unwrap().contains(&gw4));
        let routes6 = h.routes(Family::V6).unwrap();
        assert!(routes6.contains(&gw6), "{routes6:?}");

        let e = h.add_route(&gw6).unwrap_err();
        assert!(e.is_exists(), "{e}");
        h.delete_route(&gw4).unwrap();
        h.delete_route(&gw6).unwrap();
        assert!(!h.routes(Family::V4).unwrap().contains(&gw4));
        assert!(!h.routes(Family::V6).unwrap().contains(&gw6));
    })
    .unwrap();
    let out = pod.ip(&["route"]).unwrap();
    assert!(!out.contains("default"), "{out}");
}

#[test]
fn kernel_reason_is_in_the_error() {
    if !privileged("kernel_reason_is_in_the_error") {
        return;
    }
    let (host, _pod) = pair();
    host.run(|| {
        let mut h = Handle::new().unwrap();
        // Host bits set under a /24 destination: EINVAL with an ext-ack.
        let r = Route::device(net("10.0.0.1/24"), 1);
        let e = h.add_route(&r).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
        assert!(e.to_string().contains('['), "no extended ack in {e}");
        eprintln!("expected refusal: {e}");
        // The handle is still usable after an error.
        assert!(h.link("lo").unwrap().is_some());
    })
    .unwrap();
}

#[test]
fn permanent_neighbours() {
    if !privileged("permanent_neighbours") {
        return;
    }
    let (host, pod) = pair();
    let (_, pi) = host
        .run(|| veth(&mut Handle::new().unwrap(), "weftv5", &pod, true))
        .unwrap();
    pod.run(|| {
        let mut h = Handle::new().unwrap();
        let n4 = Neighbour {
            index: pi,
            ip: ip("169.254.1.1"),
            mac: HOST_MAC,
            permanent: true,
        };
        let n6 = Neighbour {
            ip: ip("fe80::1"),
            ..n4.clone()
        };
        h.add_neighbour(&n4).unwrap();
        h.add_neighbour(&n6).unwrap();
        // create|replace: a repeated ADD is fine.
        h.add_neighbour(&n4).unwrap();
        let ns = h.neighbours(pi).unwrap();
        assert!(ns.contains(&n4) && ns.contains(&n6), "{ns:?}");
        assert!(h.neighbours(1).unwrap().is_empty());

        h.delete_neighbour(pi, n4.ip).unwrap();
        let e = h.delete_neighbour(pi, n4.ip).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(!h.neighbours(pi).unwrap().contains(&n4));
    })
    .unwrap();
    let out = pod.ip(&["-6", "neigh", "show", "dev", "eth0"]).unwrap();
    assert!(
        out.contains("fe80::1") && out.contains("PERMANENT"),
        "{out}"
    );
}

#[test]
fn sysctl_in_a_netns_leaves_the_caller_alone() {
    if !privileged("sysctl_in_a_netns_leaves_the_caller_alone") {
        return;
    }
    let (host, pod) = pair();
    // This thread stays in the test process's namespace and only reads there.
    let before = sysctl_get("net.ipv4.ip_forward").unwrap();
    let ns = Netns::open(host.path()).unwrap();
    let want = if before == "1" { "0" } else { "1" };
    sysctl_set_in(&ns, "net.ipv4.ip_forward", want).unwrap();
    assert_eq!(sysctl_get_in(&ns, "net.ipv4.ip_forward").unwrap(), want);
    assert_eq!(sysctl_get("net.ipv4.ip_forward").unwrap(), before);
    let out = host
        .exec("cat", &["/proc/sys/net/ipv4/ip_forward"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    // Back in our own namespace after the guard.
    assert!(
        Netns::current()
            .unwrap()
            .is_same_as(&Netns::open(Path::new("/proc/self/ns/net")).unwrap())
            .unwrap()
    );

    // Interface names with dots: slash form, and sysctl(8)'s dotted form.
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let mut end = host_end("weft.6");
        end.alias = None;
        h.create_veth(&end, &pod_end(), &Netns::open(pod.path()).unwrap())
            .unwrap();
        sysctl_set("net/ipv4/conf/weft.6/forwarding", "1").unwrap();
        assert_eq!(sysctl_get("net.ipv4.conf.weft/6.forwarding").unwrap(), "1");
        sysctl_set("net.ipv4.conf.weft/6.forwarding", "0").unwrap();
        assert_eq!(sysctl_get("net/ipv4/conf/weft.6/forwarding").unwrap(), "0");
        // Unchanged value: no write (cannot be observed, but must succeed).
        sysctl_set("net/ipv4/conf/weft.6/forwarding", "0").unwrap();
        assert!(matches!(
            sysctl_set("kernel.pid_max", "1"),
            Err(Error::Invalid(_))
        ));
        let e = sysctl_get("net/ipv4/conf/absent0/forwarding").unwrap_err();
        assert!(e.is_not_found(), "{e}");
    })
    .unwrap();
}

#[test]
fn netns_open_compare_and_guard() {
    if !privileged("netns_open_compare_and_guard") {
        return;
    }
    let e = Netns::open(Path::new("/run/netns/weft-does-not-exist")).unwrap_err();
    assert!(e.is_not_found(), "{e}");

    let (host, pod) = pair();
    let a1 = Netns::open(host.path()).unwrap();
    let a2 = Netns::open(host.path()).unwrap();
    let b = Netns::open(pod.path()).unwrap();
    assert!(a1.is_same_as(&a2).unwrap());
    assert!(!a1.is_same_as(&b).unwrap());

    let here = Netns::current().unwrap();
    {
        let _guard = NetnsGuard::enter(&a1).unwrap();
        assert!(Netns::current().unwrap().is_same_as(&a1).unwrap());
    }
    assert!(Netns::current().unwrap().is_same_as(&here).unwrap());
    let guard = NetnsGuard::enter(&b).unwrap();
    guard.exit().unwrap();
    assert!(Netns::current().unwrap().is_same_as(&here).unwrap());

    // A handle opened through in_netns sees the target namespace's links.
    host.run(|| {
        let mut h = Handle::new().unwrap();
        veth(&mut h, "weftv7", &pod, false);
    })
    .unwrap();
    let mut hb = Handle::in_netns(&b).unwrap();
    assert!(hb.link("eth0").unwrap().is_some());
    assert!(hb.link("weftv7").unwrap().is_none());
    assert!(Netns::current().unwrap().is_same_as(&here).unwrap());
}

#[test]
fn timing_of_a_plugin_style_add() {
    if !privileged("timing_of_a_plugin_style_add") {
        return;
    }
    let (host, pod) = pair();
    host.run(|| {
        let start = Instant::now();
        let mut last = start;
        let mut laps = Vec::new();
        let mut lap = |what: &'static str| {
            laps.push(format!("{what} {:?}", last.elapsed()));
            last = Instant::now();
        };
        let pod_ns = Netns::open(pod.path()).unwrap();
        let mut h = Handle::new().unwrap();
        lap("open");
        let mut host_side = host_end("weftv8");
        host_side.alias = None;
        let mut pod_side = pod_end();
        pod_side.alias = None;
        h.create_veth_host_up(&host_side, &pod_side, &pod_ns)
            .unwrap();
        lap("veth");
        let hi = h.link("weftv8").unwrap().unwrap().index;
        lap("lookup");
        h.set_alias(hi, "pod").unwrap();
        lap("alias");
        h.add_route(&Route::device(net("10.244.1.9/32"), hi))
            .unwrap();
        h.add_route(&Route::device(net("fd00::9/128"), hi)).unwrap();
        lap("2 host routes");
        let mut p = Handle::in_netns(&pod_ns).unwrap();
        lap("pod handle");
        let pi = p.link("eth0").unwrap().unwrap().index;
        p.set_up(pi).unwrap();
        lap("lookup+up");
        p.add_address(pi, net("10.244.1.9/32"), true).unwrap();
        p.add_address(pi, net("fd00::9/128"), true).unwrap();
        lap("2 addrs");
        let mut gw = Route::via(net("0.0.0.0/0"), ip("169.254.1.1"), pi);
        gw.onlink = true;
        p.add_route(&gw).unwrap();
        p.add_route(&Route::via(net("::/0"), ip("fe80::1"), pi))
            .unwrap();
        lap("2 pod routes");
        for gw in ["169.254.1.1", "fe80::1"] {
            p.add_neighbour(&Neighbour {
                index: pi,
                ip: ip(gw),
                mac: HOST_MAC,
                permanent: true,
            })
            .unwrap();
        }
        lap("2 neighbours");
        eprintln!(
            "plugin-style ADD: {:?} total ({})",
            start.elapsed(),
            laps.join(", ")
        );
    })
    .unwrap();
}

/// The pod side's permanent neighbours for the link-local gateways.
fn gateway_neighbours(pi: u32) -> Vec<Neighbour> {
    ["169.254.1.1", "fe80::1"]
        .into_iter()
        .map(|gw| Neighbour {
            index: pi,
            ip: ip(gw),
            mac: HOST_MAC,
            permanent: true,
        })
        .collect()
}

fn default_v4(pi: u32) -> Route {
    let mut gw = Route::via(net("0.0.0.0/0"), ip("169.254.1.1"), pi);
    gw.onlink = true;
    gw
}

#[test]
fn batch_applies_in_order() {
    if !privileged("batch_applies_in_order") {
        return;
    }
    let (host, pod) = pair();
    let (hi, pi) = host
        .run(|| veth(&mut Handle::new().unwrap(), "weftb1", &pod, false))
        .unwrap();

    // Pod side, peer still down: the IPv4 default route only works because
    // set_up comes before it in the same datagram.
    pod.run(|| {
        let mut h = Handle::new().unwrap();
        let gw6 = Route::via(net("::/0"), ip("fe80::1"), pi);
        let mut b = Batch::new();
        b.add_address(pi, net("10.244.2.5/32"), true).add_address(
            pi,
            net("fd00:244:2::5/128"),
            true,
        );
        for n in gateway_neighbours(pi) {
            b.add_neighbour(&n);
        }
        b.set_up(pi).add_route(&default_v4(pi)).add_route(&gw6);
        assert_eq!(b.len(), 7);
        h.apply(&b).unwrap();

        assert!(h.link_by_index(pi).unwrap().unwrap().up);
        let addrs = h.addresses(pi).unwrap();
        assert!(addrs.contains(&net("10.244.2.5/32")), "{addrs:?}");
        assert!(addrs.contains(&net("fd00:244:2::5/128")), "{addrs:?}");
        let ns = h.neighbours(pi).unwrap();
        assert!(
            gateway_neighbours(pi).iter().all(|n| ns.contains(n)),
            "{ns:?}"
        );
        assert!(h.routes(Family::V4).unwrap().contains(&default_v4(pi)));
        assert!(h.routes(Family::V6).unwrap().contains(&gw6));
    })
    .unwrap();

    // Host side, as the plugin does it: alias, neighbours, up, routes.
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let v4 = Route::device(net("10.244.2.5/32"), hi);
        let mut b = Batch::new();
        b.set_alias(hi, "default/pod-b eth0")
            .set_up(hi)
            .replace_route(&v4)
            .replace_route(&Route::device(net("fd00:244:2::5/128"), hi));
        h.apply(&b).unwrap();
        // Replacing is idempotent: the same batch again succeeds.
        h.apply(&b).unwrap();
        let link = h.link_by_index(hi).unwrap().unwrap();
        assert_eq!(link.alias.as_deref(), Some("default/pod-b eth0"));
        assert!(link.up);
        assert!(h.routes(Family::V4).unwrap().contains(&v4));
        // An empty batch sends nothing and succeeds.
        h.apply(&Batch::new()).unwrap();
        assert!(h.apply_each(&Batch::new()).is_empty());
    })
    .unwrap();
    let out = pod.ip(&["route"]).unwrap();
    assert!(out.contains("default via 169.254.1.1"), "{out}");
}

#[test]
fn batch_failure_in_the_middle() {
    if !privileged("batch_failure_in_the_middle") {
        return;
    }
    let (host, pod) = pair();
    host.run(|| veth(&mut Handle::new().unwrap(), "weftb2", &pod, false))
        .unwrap();
    pod.run(|| {
        let mut h = Handle::new().unwrap();
        let pi = h.link("eth0").unwrap().unwrap().index;
        // The route comes before set_up: the link is still down for it.
        let mut b = Batch::new();
        b.set_alias(pi, "before")
            .add_route(&default_v4(pi))
            .set_up(pi)
            .add_address(pi, net("10.244.3.5/32"), true);
        let e = h.apply(&b).unwrap_err();
        eprintln!("expected refusal: {e}");
        assert_eq!(e.errno(), Some(libc::ENETDOWN), "{e}");
        let want = format!("add route 0.0.0.0/0 via 169.254.1.1 dev {pi} onlink");
        assert!(e.to_string().starts_with(&want), "{e}");
        // No transactions: what came after the failure was done anyway.
        let link = h.link_by_index(pi).unwrap().unwrap();
        assert!(link.up);
        assert_eq!(link.alias.as_deref(), Some("before"));
        assert!(h.addresses(pi).unwrap().contains(&net("10.244.3.5/32")));
        // The handle is still usable, for single calls and batches.
        h.add_route(&default_v4(pi)).unwrap();
        let mut ok = Batch::new();
        ok.set_up(pi);
        h.apply(&ok).unwrap();

        // Per request: the address exists, the route has host bits set.
        let mut b = Batch::new();
        b.add_address(pi, net("10.244.3.5/32"), true)
            .set_up(pi)
            .add_route(&Route::device(net("10.0.0.1/24"), pi))
            .add_neighbour(&gateway_neighbours(pi)[0])
            .add_route(&default_v4(pi));
        let out = h.apply_each(&b);
        assert_eq!(out.len(), 5);
        let e0 = out[0].as_ref().unwrap_err();
        assert!(e0.is_exists(), "{e0}");
        assert!(
            e0.to_string()
                .starts_with(&format!("add address 10.244.3.5/32 to link {pi}"))
        );
        assert!(out[1].is_ok());
        let e2 = out[2].as_ref().unwrap_err();
        assert_eq!(e2.errno(), Some(libc::EINVAL), "{e2}");
        assert!(
            e2.to_string().starts_with("add route 10.0.0.1/24 dev"),
            "{e2}"
        );
        assert!(e2.to_string().contains('['), "no extended ack in {e2}");
        assert!(out[3].is_ok());
        assert!(out[4].as_ref().unwrap_err().is_exists());
        // apply reports the first of them.
        let first = h.apply(&b).unwrap_err();
        assert!(
            first.is_exists() && first.to_string().contains("add address"),
            "{first}"
        );
        assert!(h.link("lo").unwrap().is_some());
    })
    .unwrap();
}

#[test]
fn batch_larger_than_one_datagram() {
    if !privileged("batch_larger_than_one_datagram") {
        return;
    }
    let (host, pod) = pair();
    let (hi, _) = host
        .run(|| veth(&mut Handle::new().unwrap(), "weftb3", &pod, true))
        .unwrap();
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let routes: Vec<Route> = (0..100)
            .map(|i| Route::device(net(&format!("10.250.{i}.0/24")), hi))
            .collect();
        let mut b = Batch::new();
        for r in &routes {
            b.add_route(r);
        }
        h.apply(&b).unwrap();
        let have = h.routes(Family::V4).unwrap();
        assert!(routes.iter().all(|r| have.contains(r)));
        // Again: every one of the 100 error ACKs (with their extended-ack
        // text) is matched to its request across the datagrams.
        let out = h.apply_each(&b);
        assert_eq!(out.len(), 100);
        for (r, o) in routes.iter().zip(&out) {
            let e = o.as_ref().unwrap_err();
            assert!(e.is_exists(), "{e}");
            let want = format!("add route {} dev {hi}", r.dst);
            assert!(e.to_string().starts_with(&want), "{e}");
        }
        assert!(h.link("lo").unwrap().is_some());
    })
    .unwrap();
}

#[test]
fn timing_of_sequential_calls_and_a_batch() {
    if !privileged("timing_of_sequential_calls_and_a_batch") {
        return;
    }
    let (host, pod) = pair();
    let (hi, _) = host
        .run(|| veth(&mut Handle::new().unwrap(), "weftb4", &pod, true))
        .unwrap();
    host.run(|| {
        let mut h = Handle::new().unwrap();
        let route = |i: usize| Route::device(net(&format!("10.251.{i}.0/24")), hi);
        let start = Instant::now();
        for i in 0..8 {
            h.add_route(&route(i)).unwrap();
        }
        let sequential = start.elapsed();
        let mut b = Batch::new();
        for i in 8..16 {
            b.add_route(&route(i));
        }
        let start = Instant::now();
        h.apply(&b).unwrap();
        let batched = start.elapsed();
        eprintln!("8 routes: {sequential:?} as 8 calls, {batched:?} as one batch");
    })
    .unwrap();
}

#[test]
fn guards_do_not_leak_descriptors() {
    if !privileged("guards_do_not_leak_descriptors") {
        return;
    }
    let ns = NetNs::new("fd").unwrap();
    let target = Netns::open(ns.path()).unwrap();
    let open_fds = || std::fs::read_dir("/proc/thread-self/fd").unwrap().count();
    std::thread::spawn(move || {
        let before = open_fds();
        for _ in 0..500 {
            NetnsGuard::enter(&target).unwrap().exit().unwrap();
            drop(NetnsGuard::enter(&target).unwrap());
        }
        // The descriptor table is the process's, shared with the tests
        // running in parallel: a leak shows as one descriptor per round
        // (1,000 here), their sockets as a handful.
        assert!(
            open_fds() < before + 100,
            "enter/exit leaks descriptors: {before} -> {}",
            open_fds()
        );
    })
    .join()
    .unwrap();
}
