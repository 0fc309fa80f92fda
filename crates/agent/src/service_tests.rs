use serde_json::json;
use weft_model::{EndpointSlice, Service};

use super::*;
use crate::fake::FakeKernel;
use crate::testutil::{ip, node};
use weft_netlink::CtEntry;

fn service(name: &str, protocol: &str, node_port: bool) -> Service {
    let mut port = json!({"name": "p", "port": 53, "protocol": protocol, "targetPort": 5353});
    let mut spec = json!({"clusterIPs": ["10.96.0.10", "fd00:10:96::a"],
                          "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"});
    if node_port {
        port["nodePort"] = json!(30053);
        spec["type"] = json!("NodePort");
    }
    spec["ports"] = json!([port]);
    Service::from_value(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec}))
    .unwrap()
}

fn slice(service: &str, family: &str, endpoints: &[(&str, bool)]) -> EndpointSlice {
    let eps: Vec<_> = endpoints
        .iter()
        .map(|(a, ready)| {
            json!({"addresses": [a], "nodeName": "n1",
                                 "conditions": {"ready": ready}})
        })
        .collect();
    EndpointSlice::from_value(&json!({"apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-{family}"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": family, "endpoints": eps,
        "ports": [{"name": "p", "port": 5353, "protocol": "UDP"}]}))
    .unwrap()
}

fn pass(
    k: &mut FakeKernel,
    state: &mut ServiceState,
    svcs: &[Service],
    slices: &[EndpointSlice],
) -> ServiceReport {
    let me = node("n1", &["10.244.1.0/24"], &["192.168.50.11"], false);
    reconcile_services(
        k,
        state,
        svcs,
        slices,
        &me,
        &["10.244.0.0/16".parse().unwrap()],
    )
    .unwrap()
}

#[test]
fn first_pass_loads_the_table_then_nothing_and_a_restart_adopts_it() {
    let mut k = FakeKernel::default();
    let mut state = ServiceState::new();
    let svcs = [service("dns", "UDP", false)];
    let slices = [slice("dns", "IPv4", &[("10.244.1.5", true)])];
    let first = pass(&mut k, &mut state, &svcs, &slices);
    assert_eq!(first.action, TableAction::Full);
    assert_eq!(k.proxy_scripts.len(), 1);
    assert!(k.proxy_scripts[0].contains("table inet weft-proxy"));
    assert!(k.proxy_scripts[0].contains("10.244.1.5"));
    assert!(k.proxy_hash.is_some());
    assert_eq!(
        pass(&mut k, &mut state, &svcs, &slices).action,
        TableAction::Unchanged
    );

    let mut restarted = ServiceState::new();
    assert_eq!(
        pass(&mut k, &mut restarted, &svcs, &slices).action,
        TableAction::Adopted
    );
    assert_eq!(k.proxy_scripts.len(), 1, "a restart applies nothing");
    assert!(k.conntrack_deletes.is_empty());
}

#[test]
fn a_udp_endpoint_that_leaves_is_a_delta_and_its_flows_are_cleared() {
    let mut k = FakeKernel::default();
    let mut state = ServiceState::new();
    let svcs = [service("dns", "UDP", true)];
    let both = [slice(
        "dns",
        "IPv4",
        &[("10.244.1.5", true), ("10.244.2.7", true)],
    )];
    pass(&mut k, &mut state, &svcs, &both);
    // Not ready any more: out of the Service, flows cleared.
    let one = [slice(
        "dns",
        "IPv4",
        &[("10.244.1.5", true), ("10.244.2.7", false)],
    )];
    let report = pass(&mut k, &mut state, &svcs, &one);
    assert_eq!(report.action, TableAction::Delta);
    assert_eq!(report.flushed, 2);
    let gone = ip("10.244.2.7");
    assert_eq!(
        k.conntrack_deletes,
        vec![
            UdpFlush {
                front: UdpFront::Ip(ip("10.96.0.10"), 53),
                endpoint: gone
            },
            UdpFlush {
                front: UdpFront::NodePort(IpFamily::V4, 30053),
                endpoint: gone
            },
        ]
    );
    let delta = k.proxy_scripts.last().unwrap();
    assert!(!delta.contains("delete table"), "{delta}");
    // The table change comes first: cleared flows must not be re-created
    // to the old endpoint.
    let order: Vec<_> = k
        .changes
        .iter()
        .map(|c| c.split(' ').next().unwrap())
        .collect();
    assert_eq!(order, ["nft", "nft", "conntrack", "conntrack"]);
}

#[test]
fn tcp_endpoints_and_deleted_services_are_handled() {
    let mut k = FakeKernel::default();
    let mut state = ServiceState::new();
    let tcp = [service("web", "TCP", false)];
    pass(
        &mut k,
        &mut state,
        &tcp,
        &[slice("web", "IPv4", &[("10.244.1.5", true)])],
    );
    pass(&mut k, &mut state, &tcp, &[]);
    assert!(k.conntrack_deletes.is_empty(), "TCP flows end on their own");

    let udp = [service("dns", "UDP", false)];
    let v6 = [slice("dns", "IPv6", &[("fd00:10:244:1::5", true)])];
    pass(&mut k, &mut state, &udp, &v6);
    pass(&mut k, &mut state, &[], &v6);
    assert_eq!(
        k.conntrack_deletes,
        vec![UdpFlush {
            front: UdpFront::Ip(ip("fd00:10:96::a"), 53),
            endpoint: ip("fd00:10:244:1::5"),
        }]
    );
}

#[test]
fn a_failed_deletion_is_retried_unless_the_endpoint_came_back() {
    let mut k = FakeKernel::default();
    let mut state = ServiceState::new();
    let svcs = [service("dns", "UDP", false)];
    let two = [slice(
        "dns",
        "IPv4",
        &[("10.244.1.5", true), ("10.244.2.7", true)],
    )];
    let one = [slice("dns", "IPv4", &[("10.244.1.5", true)])];
    pass(&mut k, &mut state, &svcs, &two);
    k.fail_next_conntrack = true;
    pass(&mut k, &mut state, &svcs, &one);
    assert!(k.conntrack_deletes.is_empty());
    assert_eq!(pass(&mut k, &mut state, &svcs, &one).flushed, 1);
    assert_eq!(k.conntrack_deletes.len(), 1);

    k.fail_next_conntrack = true;
    pass(&mut k, &mut state, &svcs, &two);
    pass(&mut k, &mut state, &svcs, &one);
    assert_eq!(k.conntrack_deletes.len(), 1, "the failed one is pending");
    pass(&mut k, &mut state, &svcs, &two);
    assert_eq!(
        k.conntrack_deletes.len(),
        1,
        "it came back: nothing to clear"
    );
}

#[test]
fn conntrack_arguments_name_family_front_and_endpoint() {
    let v4 = UdpFlush {
        front: UdpFront::Ip(ip("10.96.0.10"), 53),
        endpoint: ip("10.244.2.7"),
    };
    assert_eq!(
        conntrack_args(&v4).join(" "),
        "-D -f ipv4 -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.2.7"
    );
    let np = UdpFlush {
        front: UdpFront::NodePort(IpFamily::V6, 30053),
        endpoint: ip("fd00::7"),
    };
    assert_eq!(
        conntrack_args(&np).join(" "),
        "-D -f ipv6 -p udp --orig-port-dst 30053 --reply-src fd00::7"
    );
}

/// Three UDP endpoints of `dns`, the last one ready or not.
fn three(last_ready: bool) -> [EndpointSlice; 1] {
    [slice(
        "dns",
        "IPv4",
        &[
            ("10.244.1.5", true),
            ("10.244.2.7", true),
            ("10.244.3.9", last_ready),
        ],
    )]
}

#[test]
fn an_endpoint_change_is_one_netlink_batch_carrying_the_stamp() {
    let mut k = FakeKernel::default();
    let mut state = ServiceState::new();
    let svcs = [service("dns", "UDP", false)];
    assert_eq!(
        pass(&mut k, &mut state, &svcs, &three(true)).action,
        TableAction::Full
    );
    let report = pass(&mut k, &mut state, &svcs, &three(false));
    assert_eq!(report.action, TableAction::Delta);
    assert_eq!(k.proxy_scripts.len(), 1, "no nft run for the delta");
    assert_eq!(k.proxy_batches.len(), 1);
    // The stamp in the batch is the new table's: the next pass finds it
    // and does nothing, a restarted agent adopts the table.
    assert_eq!(
        pass(&mut k, &mut state, &svcs, &three(false)).action,
        TableAction::Unchanged
    );
    let mut restarted = ServiceState::new();
    assert_eq!(
        pass(&mut k, &mut restarted, &svcs, &three(false)).action,
        TableAction::Adopted
    );
    // And back: another batch.
    assert_eq!(
        pass(&mut k, &mut restarted, &svcs, &three(true)).action,
        TableAction::Delta
    );
    assert_eq!(k.proxy_batches.len(), 2);
    assert_eq!(k.proxy_scripts.len(), 1);
}

#[test]
fn a_refused_batch_falls_back_to_an_nft_delta() {
    let mut k = FakeKernel::default();
    let mut state = ServiceState::new();
    let svcs = [service("dns", "UDP", false)];
    pass(&mut k, &mut state, &svcs, &three(true));
    k.fail_next_proxy_batch = true;
    let report = pass(&mut k, &mut state, &svcs, &three(false));
    assert_eq!(report.action, TableAction::Delta);
    assert!(k.proxy_batches.is_empty());
    let delta = k.proxy_scripts.last().unwrap();
    assert!(!delta.contains("delete table"), "{delta}");
    assert!(delta.contains("flush chain"), "{delta}");
    assert_eq!(
        pass(&mut k, &mut state, &svcs, &three(false)).action,
        TableAction::Unchanged
    );
}

/// Kernel tier: the stamp a netlink delta writes is the one `nft` reads
/// back, so the next pass sees its own table and a restart adopts it.
#[test]
fn kernel_netlink_delta_keeps_the_stamp() {
    use crate::real::NetlinkKernel;
    use weft_testkit::{NetNs, privileged};

    if !privileged("kernel_netlink_delta_keeps_the_stamp") {
        return;
    }
    let ns = NetNs::new("agsvc").unwrap();
    let svcs = [service("dns", "UDP", false)];
    let result = ns.run(|| {
        let mut k = NetlinkKernel::new().unwrap();
        let mut state = ServiceState::new();
        let me = node("n1", &["10.244.1.0/24"], &["192.168.50.11"], false);
        let cidrs = ["10.244.0.0/16".parse().unwrap()];
        let mut pass = |state: &mut ServiceState, slices: &[EndpointSlice]| {
            reconcile_services(&mut k, state, &svcs, slices, &me, &cidrs)
                .unwrap()
                .action
        };
        // A third endpoint becomes ready: an addition, no stale flows.
        let actions = [
            pass(&mut state, &three(false)),
            pass(&mut state, &three(true)),
            pass(&mut state, &three(true)),
            pass(&mut ServiceState::new(), &three(true)),
        ];
        let mut fresh = Compiler::new();
        fresh.update(
            &svcs,
            &three(true),
            &ProxyNode {
                name: me.name.clone(),
                node_ips: me.addresses.clone(),
                pod_cidrs: me.pod_cidrs.clone(),
                cluster_cidrs: cidrs.to_vec(),
            },
        );
        let want = fresh.hash().to_owned();
        (actions, k.proxy_hash().unwrap(), want)
    });
    let (actions, have, want) = result.unwrap();
    assert_eq!(
        actions,
        [
            TableAction::Full,
            TableAction::Delta,
            TableAction::Unchanged,
            TableAction::Adopted
        ]
    );
    assert_eq!(have, Some(want));
    let listing = ns
        .exec(
            "nft",
            &["list", "map", "inet", "weft-proxy", "service_ips4"],
        )
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("10.96.0.10 . udp . 53 : goto svc4-"),
        "{listing:?}"
    );
}

/// A UDP conntrack entry from `client:sport` to `front:port`, answered by
/// `endpoint:5353` (DNATed) or by the front itself.
fn flow(client: &str, sport: u16, front: &str, port: u16, endpoint: &str) -> CtEntry {
    use weft_netlink::CtTuple;
    let reply_port = if endpoint == front { port } else { 5353 };
    CtEntry {
        protocol: 17,
        orig: CtTuple {
            src: ip(client),
            dst: ip(front),
            sport,
            dport: port,
        },
        reply: CtTuple {
            src: ip(endpoint),
            dst: ip(client),
            sport: reply_port,
            dport: sport,
        },
        zone: 0,
        id: u32::from(sport),
    }
}

#[test]
fn a_restarted_agent_sweeps_flows_to_endpoints_that_left_while_it_was_down() {
    let mut k = FakeKernel::default();
    let svcs = [service("dns", "UDP", true)];
    let gone = flow("10.244.1.20", 40001, "10.96.0.10", 53, "10.244.2.7");
    let live = flow("10.244.1.20", 40002, "10.96.0.10", 53, "10.244.1.5");
    let node_port_gone = flow("192.0.2.1", 40003, "192.168.50.11", 30053, "10.244.2.7");
    // Not DNATed, and not to a front: none of the proxy's business.
    let direct = flow("10.244.1.20", 40004, "10.96.0.10", 53, "10.96.0.10");
    let elsewhere = flow("10.244.1.20", 40005, "10.96.0.99", 53, "10.244.2.7");
    k.conntrack = vec![gone, live, node_port_gone, direct, elsewhere];

    let mut restarted = ServiceState::new();
    let slices = [slice("dns", "IPv4", &[("10.244.1.5", true)])];
    let report = pass(&mut k, &mut restarted, &svcs, &slices);
    assert_eq!(k.conntrack_removed, vec![gone, node_port_gone]);
    assert_eq!(k.conntrack, vec![live, direct, elsewhere]);
    assert_eq!(report.flushed, 2);
    assert_eq!(k.conntrack_dumps, 2, "one dump per family of UDP fronts");

    // Later passes compare with the previous one: no dump.
    pass(&mut k, &mut restarted, &svcs, &slices);
    assert_eq!(k.conntrack_dumps, 2);
}

#[test]
fn no_udp_front_no_dump() {
    let mut k = FakeKernel::default();
    let tcp = [service("web", "TCP", false)];
    pass(&mut k, &mut ServiceState::new(), &tcp, &[]);
    assert_eq!(k.conntrack_dumps, 0);
}

/// Kernel tier: a UDP flow DNATed to endpoint A while one agent ran; a
/// fresh agent state whose Service no longer has A deletes it on its first
/// pass, and leaves a flow of another Service to its live endpoint.
#[test]
fn kernel_restart_sweeps_stale_udp_flows() {
    use std::net::UdpSocket;

    use crate::real::NetlinkKernel;
    use weft_netlink::ConntrackSocket;
    use weft_testkit::{NetNs, privileged};

    if !privileged("kernel_restart_sweeps_stale_udp_flows") {
        return;
    }
    let ns = NetNs::new("agct").unwrap();
    // Endpoints are addresses of the node itself (DNATed locally), the
    // ClusterIPs routed to a link (one end of a veth pair inside the
    // namespace) so that the first route lookup succeeds before the DNAT.
    ns.ip(&[
        "link", "add", "weftct0", "type", "veth", "peer", "name", "weftct1",
    ])
    .unwrap();
    ns.ip(&["link", "set", "weftct0", "up"]).unwrap();
    ns.ip(&["link", "set", "weftct1", "up"]).unwrap();
    ns.ip(&["link", "set", "lo", "up"]).unwrap();
    for a in ["10.244.2.7/32", "10.244.1.5/32", "10.244.3.9/32"] {
        ns.ip(&["addr", "add", a, "dev", "weftct0"]).unwrap();
    }
    ns.ip(&["route", "add", "10.96.0.0/16", "dev", "weftct0"])
        .unwrap();
    let mut other = service("other", "UDP", false);
    other.cluster_ips = vec![ip("10.96.0.11")];
    other.ip_families = vec![IpFamily::V4];
    let svcs = [service("dns", "UDP", false), other];
    let slices = |dns: &str| {
        let mut other = slice("other", "IPv4", &[("10.244.1.5", true)]);
        other.name = "other-IPv4".into();
        [slice("dns", "IPv4", &[(dns, true)]), other]
    };
    let (swept, left) = ns
        .run(|| {
            let mut k = NetlinkKernel::new().unwrap();
            let me = node("n1", &["10.244.1.0/24"], &["192.168.50.11"], false);
            let cidrs = ["10.244.0.0/16".parse().unwrap()];
            let mut pass = |state: &mut ServiceState, slices: &[EndpointSlice]| {
                reconcile_services(&mut k, state, &svcs, slices, &me, &cidrs).unwrap()
            };
            pass(&mut ServiceState::new(), &slices("10.244.2.7"));
            let send = |to: &str| {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                socket.send_to(b"ping", to).unwrap();
                socket.local_addr().unwrap().port()
            };
            let (to_a, to_live) = (send("10.96.0.10:53"), send("10.96.0.11:53"));
            let flows = |ports: &[u16]| {
                let mut socket = ConntrackSocket::new().unwrap();
                let mut found: Vec<CtEntry> = socket
                    .dump(false, 17)
                    .unwrap()
                    .into_iter()
                    .filter(|e| ports.contains(&e.orig.sport))
                    .collect();
                found.sort_by_key(|e| e.orig.sport);
                found
            };
            let before = flows(&[to_a, to_live]);
            assert_eq!(before.len(), 2, "{before:?}");
            let to_a_flow = before.iter().find(|e| e.orig.sport == to_a).unwrap();
            assert_eq!(to_a_flow.reply.src, ip("10.244.2.7"), "DNATed to A");

            // The agent restarts; meanwhile A left the Service for C.
            let report = pass(&mut ServiceState::new(), &slices("10.244.3.9"));
            (report.flushed, flows(&[to_a, to_live]))
        })
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].orig.dst, ip("10.96.0.11"));
    assert_eq!(left[0].reply.src, ip("10.244.1.5"));
}
