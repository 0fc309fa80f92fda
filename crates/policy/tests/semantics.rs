//! One case per semantic rule of issue 4 (and the API reference), in both
//! families, on small hand-built clusters; plus the explanation the verdict
//! carries.

mod support;

use serde_json::{Value, json};
use support::*;
use weft_model::Protocol;
use weft_policy::{Endpoint, IpFamily, Packet, PolicyView, evaluate};

const FAMILIES: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

/// Whether `from` reaches `to` on `protocol`/`port`, in `family`.
fn allowed(
    view: &PolicyView,
    from: Endpoint,
    to: Endpoint,
    protocol: Protocol,
    port: u16,
    family: IpFamily,
) -> bool {
    evaluate(
        view,
        &Packet::new(from, to, protocol, port).with_family(family),
    )
    .allowed
}

/// Asserts `from -> to` on TCP `port` in both families.
fn check(view: &PolicyView, from: &str, to: &str, port: u16, expected: bool) {
    for family in FAMILIES {
        assert_eq!(
            allowed(view, pod_ep(from), pod_ep(to), TCP, port, family),
            expected,
            "{from} -> {to} TCP/{port} {family:?}"
        );
    }
}

#[test]
fn isolation_needs_a_selecting_policy_of_that_type() {
    let open = cluster(&[]);
    check(&open, "dev/tool", "prod/web", 8080, true);
    // Selecting another pod does not isolate web.
    let other = cluster(&[(
        "prod/p",
        json!({"podSelector": {"matchLabels": {"app": "db"}}}),
    )]);
    check(&other, "dev/tool", "prod/web", 8080, true);
    check(&other, "dev/tool", "prod/db", 8080, false);
    // A policy in another namespace never selects prod's pods.
    let elsewhere = cluster(&[("dev/p", json!({"podSelector": {}}))]);
    check(&elsewhere, "dev/tool", "prod/web", 8080, true);
    // Ingress-only isolation leaves egress open, and the reverse.
    let ingress_only = cluster(&[("prod/p", json!({"podSelector": {}}))]);
    check(&ingress_only, "prod/web", "dev/tool", 80, true);
    let egress_only = cluster(&[(
        "prod/p",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    )]);
    check(&egress_only, "prod/web", "dev/tool", 80, false);
    check(&egress_only, "dev/tool", "prod/web", 80, true);
}

#[test]
fn policy_types_default() {
    // Egress rules without policyTypes: Ingress AND Egress (the trap upstream's
    // e2e helpers avoid by listing policyTypes).
    let view = cluster(&[(
        "prod/p",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "egress": [{}]}),
    )]);
    check(&view, "prod/web", "dev/tool", 80, true);
    check(&view, "dev/tool", "prod/web", 80, false);
}

#[test]
fn union_of_selecting_policies() {
    let view = cluster(&[
        (
            "prod/from-dev",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}], "ports": [{"port": 80}]}]}),
        ),
        (
            "prod/from-db",
            json!({"podSelector": {"matchLabels": {"tier": "front"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]}),
        ),
    ]);
    check(&view, "dev/tool", "prod/web", 80, true);
    check(&view, "dev/tool", "prod/web", 81, false);
    check(&view, "prod/db", "prod/web", 81, true);
    let verdict = evaluate(
        &view,
        &Packet::new(pod_ep("prod/db"), pod_ep("prod/web"), TCP, 81),
    );
    assert_eq!(
        verdict.ingress.selected_by,
        vec!["prod/from-dev", "prod/from-db"]
    );
}

#[test]
fn peer_selectors() {
    let peer = |from: Value| {
        cluster(&[(
            "prod/p",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": from}]}),
        )])
    };
    // podSelector alone: the policy's namespace only.
    let v = peer(json!([{"podSelector": {}}]));
    check(&v, "prod/db", "prod/web", 1, true);
    check(&v, "dev/tool", "prod/web", 1, false);
    // namespaceSelector alone: every pod there.
    let v = peer(json!([{"namespaceSelector": {"matchLabels": {"team": "b"}}}]));
    check(&v, "dev/tool", "prod/web", 1, true);
    check(&v, "prod/db", "prod/web", 1, false);
    // Empty namespaceSelector: every namespace.
    let v = peer(json!([{"namespaceSelector": {}}]));
    check(&v, "dev/tool", "prod/web", 1, true);
    check(&v, "prod/db", "prod/web", 1, true);
    // Both in one peer: AND.
    let v = peer(
        json!([{"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": {"matchLabels": {"app": "db"}}}]),
    );
    check(&v, "dev/tool", "prod/web", 1, false);
    check(&v, "prod/db", "prod/web", 1, false);
    // Two peers: OR.
    let v = peer(
        json!([{"namespaceSelector": {"matchLabels": {"team": "b"}}}, {"podSelector": {"matchLabels": {"app": "db"}}}]),
    );
    check(&v, "dev/tool", "prod/web", 1, true);
    check(&v, "prod/db", "prod/web", 1, true);
    // matchExpressions: In, NotIn, Exists, DoesNotExist.
    for (op, values, db, tool) in [
        ("In", Some(json!(["db"])), true, false),
        ("NotIn", Some(json!(["db"])), false, true),
        ("Exists", None, true, true),
        ("DoesNotExist", None, false, false),
    ] {
        let mut req = json!({"key": "app", "operator": op});
        if let Some(values) = values {
            req["values"] = values;
        }
        let v =
            peer(json!([{"namespaceSelector": {}, "podSelector": {"matchExpressions": [req]}}]));
        check(&v, "prod/db", "prod/web", 1, db);
        check(&v, "dev/tool", "prod/web", 1, tool);
    }
    // The implicit namespace-name label.
    let v = peer(
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dev"}}}]),
    );
    check(&v, "dev/tool", "prod/web", 1, true);
}

#[test]
fn ip_blocks_by_address_with_except() {
    let view = cluster(&[(
        "prod/p",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
            {"ipBlock": {"cidr": "fd00::/8", "except": ["fd01::/16"]}},
            {"ipBlock": {"cidr": "203.0.113.0/24"}},
            {"ipBlock": {"cidr": "2001:db8::/32"}}
        ]}]}),
    )]);
    // Pods match by their address: dev/tool is inside, prod/db excepted.
    check(&view, "dev/tool", "prod/web", 8080, true);
    check(&view, "prod/db", "prod/web", 8080, false);
    // External addresses, both families.
    for (src, expected) in [
        ("203.0.113.9", true),
        ("198.51.100.1", false),
        ("2001:db8::9", true),
        ("2001:db9::1", false),
    ] {
        let ok = evaluate(
            &view,
            &Packet::new(Endpoint::Ip(ip(src)), pod_ep("prod/web"), TCP, 8080),
        )
        .allowed;
        assert_eq!(ok, expected, "{src}");
    }
    // The packet's family picks the pod's address: a v4-only block does not
    // admit the pod's v6 packets.
    let v4_only = cluster(&[(
        "prod/p",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.2.0.0/16"}}]}]}),
    )]);
    assert!(allowed(
        &v4_only,
        pod_ep("dev/tool"),
        pod_ep("prod/web"),
        TCP,
        1,
        IpFamily::V4
    ));
    assert!(!allowed(
        &v4_only,
        pod_ep("dev/tool"),
        pod_ep("prod/web"),
        TCP,
        1,
        IpFamily::V6
    ));
}

#[test]
fn an_ip_of_a_pod_is_that_pod() {
    let view = cluster(&[(
        "prod/p",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]}),
    )]);
    for addr in ["10.2.0.1", "fd02::1"] {
        assert!(
            evaluate(
                &view,
                &Packet::new(Endpoint::Ip(ip(addr)), pod_ep("prod/web"), TCP, 1)
            )
            .allowed
        );
    }
    // An external address never matches a selector.
    assert!(
        !evaluate(
            &view,
            &Packet::new(Endpoint::Ip(ip("10.9.9.9")), pod_ep("prod/web"), TCP, 1)
        )
        .allowed
    );
    // The destination given as an address is isolated like the pod itself.
    assert!(
        !evaluate(
            &view,
            &Packet::new(pod_ep("prod/db"), Endpoint::Ip(ip("fd01::1")), TCP, 1)
        )
        .allowed
    );
    // External to external: nothing to isolate.
    assert!(
        evaluate(
            &view,
            &Packet::new(
                Endpoint::Ip(ip("1.1.1.1")),
                Endpoint::Ip(ip("8.8.8.8")),
                TCP,
                1
            )
        )
        .allowed
    );
}

#[test]
fn ports_protocols_ranges_and_names() {
    let ports = |ports: Value| {
        cluster(&[(
            "prod/p",
            json!({"podSelector": {}, "ingress": [{"ports": ports}]}),
        )])
    };
    // No ports: all ports and protocols.
    let v = ports(json!([]));
    for protocol in [TCP, UDP, SCTP] {
        assert!(allowed(
            &v,
            pod_ep("dev/tool"),
            pod_ep("prod/web"),
            protocol,
            4242,
            IpFamily::V4
        ));
    }
    // Protocol must match; TCP is the default.
    let v = ports(json!([{"port": 53, "protocol": "UDP"}, {"port": 7}]));
    assert!(allowed(
        &v,
        pod_ep("dev/tool"),
        pod_ep("prod/web"),
        UDP,
        53,
        IpFamily::V6
    ));
    assert!(!allowed(
        &v,
        pod_ep("dev/tool"),
        pod_ep("prod/web"),
        TCP,
        53,
        IpFamily::V6
    ));
    assert!(allowed(
        &v,
        pod_ep("dev/tool"),
        pod_ep("prod/web"),
        TCP,
        7,
        IpFamily::V6
    ));
    assert!(!allowed(
        &v,
        pod_ep("dev/tool"),
        pod_ep("prod/web"),
        SCTP,
        7,
        IpFamily::V6
    ));
    // endPort: inclusive at both ends.
    let v = ports(json!([{"port": 1000, "endPort": 1002, "protocol": "SCTP"}]));
    for (port, expected) in [(999, false), (1000, true), (1002, true), (1003, false)] {
        assert_eq!(
            allowed(
                &v,
                pod_ep("dev/tool"),
                pod_ep("prod/web"),
                SCTP,
                port,
                IpFamily::V4
            ),
            expected,
            "{port}"
        );
    }
    // Named port: resolved per destination pod, by name and protocol.
    let v = ports(json!([{"port": "http"}, {"port": "dns", "protocol": "UDP"}]));
    check(&v, "dev/tool", "prod/web", 8080, true);
    check(&v, "dev/tool", "prod/web", 9090, false);
    check(&v, "dev/tool", "prod/db", 9090, true);
    check(&v, "dev/tool", "prod/db", 8080, false);
    assert!(allowed(
        &v,
        pod_ep("dev/tool"),
        pod_ep("prod/web"),
        UDP,
        53,
        IpFamily::V4
    ));
    assert!(!allowed(
        &v,
        pod_ep("dev/tool"),
        pod_ep("prod/web"),
        TCP,
        53,
        IpFamily::V4
    ));
}

#[test]
fn named_ports_in_egress_resolve_on_the_destination() {
    let view = cluster(&[(
        "dev/p",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"ports": [{"port": "http"}]}]}),
    )]);
    check(&view, "dev/tool", "prod/web", 8080, true);
    check(&view, "dev/tool", "prod/db", 9090, true);
    check(&view, "dev/tool", "prod/db", 8080, false);
    // An address outside the cluster declares no port names.
    assert!(
        !evaluate(
            &view,
            &Packet::new(
                pod_ep("dev/tool"),
                Endpoint::Ip(ip("203.0.113.1")),
                TCP,
                8080
            )
        )
        .allowed
    );
}

#[test]
fn egress_and_ingress_must_both_allow() {
    let view = cluster(&[
        (
            "dev/deny-out",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        ),
        ("prod/allow-in", json!({"podSelector": {}, "ingress": [{}]})),
    ]);
    let v = evaluate(
        &view,
        &Packet::new(pod_ep("dev/tool"), pod_ep("prod/web"), TCP, 80),
    );
    assert!(!v.allowed && !v.egress.allowed && v.egress.isolated && v.ingress.allowed);
}

#[test]
fn local_node_may_always_reach_its_pods() {
    let view = cluster(&[("prod/deny", json!({"podSelector": {}}))]);
    for (src, expected) in [
        ("192.168.0.1", true),
        ("fc00::1", true),
        ("192.168.0.2", false),
    ] {
        let v = evaluate(
            &view,
            &Packet::new(Endpoint::Ip(ip(src)), pod_ep("prod/web"), TCP, 80),
        );
        assert_eq!(
            (v.allowed, v.ingress.from_local_node),
            (expected, expected),
            "{src}"
        );
    }
}

#[test]
fn host_network_pods_are_node_traffic() {
    let mut view = cluster(&[
        (
            "prod/deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
        (
            "dev/only-prod",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]}),
        ),
    ]);
    let mut host = pod(
        "prod/agent",
        &[],
        "node-2",
        &["192.168.0.2"],
        &[("metrics", 9100, TCP)],
    );
    host.host_network = true;
    view.pods.push(host);
    // Not isolated itself, though a namespace-wide policy selects "every pod".
    check(&view, "dev/tool", "prod/agent", 9100, true);
    // Not matched by selectors as a peer: dev/tool admits prod pods only.
    let v = evaluate(
        &view,
        &Packet::new(pod_ep("prod/agent"), pod_ep("dev/tool"), TCP, 1).with_family(IpFamily::V4),
    );
    assert!(!v.allowed && v.egress.allowed);
}

#[test]
fn traffic_to_itself_is_subject_to_policy() {
    let view = cluster(&[(
        "prod/p",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]}),
    )]);
    check(&view, "prod/web", "prod/web", 8080, false);
    check(&view, "prod/db", "prod/web", 8080, true);
}
