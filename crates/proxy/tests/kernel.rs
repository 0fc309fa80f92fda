//! Kernel tests (root): the compiled table loaded into a node namespace,
//! real TCP and UDP connections from a client pod to Services, and the
//! node's conntrack table telling which endpoint served each connection.
//! Each test builds its own namespaces (weft_testkit), removed on drop.

mod lab;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use lab::Lab;
use serde_json::json;
use support::{ready, service, slice};
use weft_model::{EndpointSlice, Service};
use weft_probe::Protocol;
use weft_testkit::privileged;

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Services of every test, and their slices (pods a and b serve
/// "http" on 8080, pod c on 8081).
fn cluster() -> (Vec<Service>, Vec<EndpointSlice>) {
    let services = vec![
        service(
            "web",
            json!({
                "clusterIPs": ["10.96.0.10", "fd00:96::10"], "ipFamilies": ["IPv4", "IPv6"],
                "ports": [{"name": "http", "port": 80, "targetPort": "web"}]
            }),
        ),
        service(
            "sticky",
            json!({
                "clusterIP": "10.96.0.30", "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "ports": [{"port": 80, "targetPort": 8080}]
            }),
        ),
        service(
            "empty",
            json!({
                "clusterIP": "10.96.0.40",
                "ports": [{"name": "tcp", "port": 80}, {"name": "udp", "port": 53, "protocol": "UDP"}]
            }),
        ),
        service(
            "self",
            json!({"clusterIP": "10.96.0.50", "ports": [{"port": 80, "targetPort": 8080}]}),
        ),
        service(
            "np",
            json!({
                "type": "NodePort", "clusterIP": "10.96.0.60",
                "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]
            }),
        ),
        service(
            "np-local",
            json!({
                "type": "NodePort", "clusterIP": "10.96.0.70", "externalTrafficPolicy": "Local",
                "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}]
            }),
        ),
        service(
            "np-remote",
            json!({
                "type": "NodePort", "clusterIP": "10.96.0.80", "externalTrafficPolicy": "Local",
                "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30082}]
            }),
        ),
    ];
    let http = |n: u16| json!([{"name": "http", "port": n}]);
    let plain = json!([{"port": 8080}]);
    let slices = vec![
        slice(
            "web-4a",
            "web",
            "IPv4",
            json!([
                ready("10.244.1.11", "node-a"),
                ready("10.244.1.12", "node-a")
            ]),
            http(8080),
        ),
        slice(
            "web-4b",
            "web",
            "IPv4",
            json!([ready("10.244.1.13", "node-b")]),
            http(8081),
        ),
        slice(
            "web-6a",
            "web",
            "IPv6",
            json!([
                ready("fd00:244:1::11", "node-a"),
                ready("fd00:244:1::12", "node-a")
            ]),
            http(8080),
        ),
        slice(
            "web-6b",
            "web",
            "IPv6",
            json!([ready("fd00:244:1::13", "node-b")]),
            http(8081),
        ),
        slice(
            "sticky",
            "sticky",
            "IPv4",
            json!([
                ready("10.244.1.11", "node-a"),
                ready("10.244.1.12", "node-a")
            ]),
            plain.clone(),
        ),
        slice(
            "self",
            "self",
            "IPv4",
            json!([ready("10.244.1.11", "node-a")]),
            plain.clone(),
        ),
        slice(
            "np",
            "np",
            "IPv4",
            json!([ready("10.244.1.12", "node-a")]),
            plain.clone(),
        ),
        slice(
            "np-local",
            "np-local",
            "IPv4",
            json!([ready("10.244.1.12", "node-a")]),
            plain.clone(),
        ),
        // Its only endpoint runs on another node.
        slice(
            "np-remote",
            "np-remote",
            "IPv4",
            json!([ready("10.244.1.11", "node-b")]),
            plain,
        ),
    ];
    (services, slices)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The address part of `ip:port` / `[ip]:port`.
fn host_of(peer: &str) -> String {
    let (host, _) = peer.rsplit_once(':').unwrap();
    host.trim_matches(['[', ']']).to_owned()
}

#[test]
fn cluster_ip_spreads_over_every_endpoint_then_follows_a_delta() {
    if !privileged("cluster_ip_spreads_over_every_endpoint_then_follows_a_delta") {
        return;
    }
    let mut lab = Lab::new();
    let (services, mut slices) = cluster();
    lab.apply(&services, &slices);

    let results = lab.probe("client", "10.96.0.10", 80, TCP, 100, PROBE_TIMEOUT);
    for r in &results {
        assert!(r.connected, "{r:?}");
        // Pod to ClusterIP keeps the client's address.
        assert_eq!(
            host_of(r.peer_seen.as_deref().unwrap()),
            lab.pod("client").v4
        );
    }
    let hits = lab.endpoints_hit("10.96.0.10");
    // c's number comes from its own slice: the named port resolved per slice.
    assert_eq!(
        hits.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["10.244.1.11:8080", "10.244.1.12:8080", "10.244.1.13:8081"]),
        "{hits:?}"
    );
    assert_eq!(hits.values().sum::<usize>(), 100, "{hits:?}");

    // b becomes unready: applied as a delta, it gets no new connection.
    slices[0].endpoints[1].conditions.ready = false;
    lab.apply(&services, &slices);
    let results = lab.probe("client", "10.96.0.10", 80, TCP, 30, PROBE_TIMEOUT);
    assert!(results.iter().all(|r| r.connected), "{results:?}");
    let hits = lab.endpoints_hit("10.96.0.10");
    assert_eq!(
        hits.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["10.244.1.11:8080", "10.244.1.13:8081"]),
        "{hits:?}"
    );
}

#[test]
fn dual_stack_service_balances_ipv6_too() {
    if !privileged("dual_stack_service_balances_ipv6_too") {
        return;
    }
    let mut lab = Lab::new();
    let (services, slices) = cluster();
    lab.apply(&services, &slices);
    let results = lab.probe("client", "fd00:96::10", 80, TCP, 60, PROBE_TIMEOUT);
    for r in &results {
        assert!(r.connected, "{r:?}");
        assert_eq!(
            host_of(r.peer_seen.as_deref().unwrap()),
            lab.pod("client").v6
        );
    }
    let hits = lab.endpoints_hit("fd00:96::10");
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.contains_key("fd00:244:1::13:8081"), "{hits:?}");
}

#[test]
fn service_without_endpoints_rejects_at_once() {
    if !privileged("service_without_endpoints_rejects_at_once") {
        return;
    }
    let mut lab = Lab::new();
    let (services, slices) = cluster();
    lab.apply(&services, &slices);
    for (port, protocol) in [(80, TCP), (53, UDP)] {
        let r = lab
            .probe("client", "10.96.0.40", port, protocol, 1, PROBE_TIMEOUT)
            .pop()
            .unwrap();
        assert!(!r.connected && !r.inconclusive, "{r:?}");
        assert!(
            r.elapsed < Duration::from_millis(100),
            "{protocol:?}: a reject, not a timeout: {r:?}"
        );
    }
}

#[test]
fn client_ip_affinity_sticks() {
    if !privileged("client_ip_affinity_sticks") {
        return;
    }
    let mut lab = Lab::new();
    let (services, slices) = cluster();
    lab.apply(&services, &slices);
    let results = lab.probe("client", "10.96.0.30", 80, TCP, 30, PROBE_TIMEOUT);
    assert!(results.iter().all(|r| r.connected), "{results:?}");
    let hits = lab.endpoints_hit("10.96.0.30");
    assert_eq!(hits.len(), 1, "every connection on one endpoint: {hits:?}");
    // Another client (pod c) is free to land elsewhere, but sticks too.
    let results = lab.probe("c", "10.96.0.30", 80, TCP, 10, PROBE_TIMEOUT);
    assert!(results.iter().all(|r| r.connected), "{results:?}");
}

#[test]
fn hairpin_and_node_port_are_masqueraded() {
    if !privileged("hairpin_and_node_port_are_masqueraded") {
        return;
    }
    let mut lab = Lab::new();
    let (services, slices) = cluster();
    lab.apply(&services, &slices);
    // Pod a reaches itself through its Service: the reply must come back
    // through the node, so the source is the node's.
    let r = lab
        .probe("a", "10.96.0.50", 80, TCP, 1, PROBE_TIMEOUT)
        .pop()
        .unwrap();
    assert!(r.connected, "{r:?}");
    assert_eq!(host_of(r.peer_seen.as_deref().unwrap()), "192.168.50.2");
    // NodePort with externalTrafficPolicy Cluster: masqueraded too.
    let r = lab
        .probe("client", "192.168.50.2", 30080, TCP, 1, PROBE_TIMEOUT)
        .pop()
        .unwrap();
    assert!(r.connected, "{r:?}");
    assert_eq!(host_of(r.peer_seen.as_deref().unwrap()), "192.168.50.2");
}

#[test]
fn node_port_from_outside_for_both_traffic_policies() {
    if !privileged("node_port_from_outside_for_both_traffic_policies") {
        return;
    }
    let mut lab = Lab::new();
    let (services, slices) = cluster();
    lab.apply(&services, &slices);
    let once = |from: &str, port: u16| {
        lab.probe(
            from,
            "192.168.50.2",
            port,
            TCP,
            1,
            Duration::from_millis(500),
        )
        .pop()
        .unwrap()
    };
    // Cluster: any endpoint, the client's address replaced by the node's.
    let r = once("external", 30080);
    assert!(r.connected, "{r:?}");
    assert_ne!(host_of(r.peer_seen.as_deref().unwrap()), "192.168.60.2");
    // Local with a local endpoint: the client's address preserved.
    let r = once("external", 30081);
    assert!(r.connected, "{r:?}");
    assert_eq!(host_of(r.peer_seen.as_deref().unwrap()), "192.168.60.2");
    // Local without a local endpoint: dropped (silence, not a reject), so
    // that a load balancer's health check moves on...
    let r = once("external", 30082);
    assert!(!r.connected && !r.inconclusive, "{r:?}");
    assert!(
        r.elapsed >= Duration::from_millis(450),
        "dropped, not rejected: {r:?}"
    );
    // ...while pods still reach it through any endpoint.
    let r = once("client", 30082);
    assert!(r.connected, "{r:?}");
}
