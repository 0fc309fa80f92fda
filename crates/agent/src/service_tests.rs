use serde_json::json;
use weft_model::{EndpointSlice, Service};

use super::*;
use crate::fake::FakeKernel;
use crate::testutil::{ip, node};

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
    use crate::stamped::ruleset_hash;
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
        let want = ruleset_hash(&compile(
            &svcs,
            &three(true),
            &ProxyNode {
                name: me.name.clone(),
                node_ips: me.addresses.clone(),
                pod_cidrs: me.pod_cidrs.clone(),
                cluster_cidrs: cidrs.to_vec(),
            },
        ));
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
