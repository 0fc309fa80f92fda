//! The explanation a verdict carries, the evaluator's edge cases (unknown
//! pods, default family), and reachability matrices.

mod support;

use serde_json::json;
use support::*;
use weft_model::Direction;
use weft_policy::{IpFamily, Packet, Reachability, RuleRef, evaluate};

#[test]
fn verdict_names_policies_rules_peers_and_ports() {
    let view = cluster(&[
        (
            "prod/a",
            json!({"podSelector": {}, "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "nope"}}}]},
                {"from": [{"ipBlock": {"cidr": "10.9.0.0/16"}}, {"namespaceSelector": {}}], "ports": [{"port": 81}, {"port": 80, "endPort": 90}]}
            ]}),
        ),
        (
            "prod/b",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}),
        ),
        (
            "prod/c",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]}),
        ),
    ]);
    let v = evaluate(
        &view,
        &Packet::new(pod_ep("dev/tool"), pod_ep("prod/web"), TCP, 81),
    );
    let rule = |policy: &str, rule_index, peer_index, port_index| RuleRef {
        policy: policy.into(),
        direction: Direction::Ingress,
        rule_index,
        peer_index,
        port_index,
    };
    assert!(v.allowed && v.ingress.isolated && !v.egress.isolated);
    assert_eq!(v.ingress.selected_by, vec!["prod/a", "prod/b"]);
    assert_eq!(
        v.ingress.by,
        vec![
            rule("prod/a", 1, Some(1), Some(0)),
            rule("prod/a", 1, Some(1), Some(1)),
            rule("prod/b", 0, None, None)
        ]
    );
    // Denied: the isolating policies are named, no rule is.
    let v = evaluate(
        &view,
        &Packet::new(pod_ep("dev/tool"), pod_ep("prod/db"), TCP, 8080),
    );
    assert!(!v.allowed && v.ingress.by.is_empty());
    assert_eq!(v.ingress.selected_by, vec!["prod/a"]);
}

#[test]
fn unknown_pods_are_bare_pods_of_their_namespace() {
    let view = cluster(&[("prod/deny", json!({"podSelector": {}}))]);
    assert!(view.pod("prod", "starting").is_none());
    assert!(
        !evaluate(
            &view,
            &Packet::new(pod_ep("dev/tool"), pod_ep("prod/starting"), TCP, 80)
        )
        .allowed
    );
    assert!(
        evaluate(
            &view,
            &Packet::new(pod_ep("dev/tool"), pod_ep("dev/starting"), TCP, 80)
        )
        .allowed
    );
}

#[test]
fn default_family_is_the_destination_pods_primary() {
    let view = cluster(&[(
        "prod/p",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "fd02::/16"}}]}]}),
    )]);
    // web's first IP is v4, so the default packet is v4 and the v6 block misses.
    assert!(
        !evaluate(
            &view,
            &Packet::new(pod_ep("dev/tool"), pod_ep("prod/web"), TCP, 1)
        )
        .allowed
    );
    assert!(
        evaluate(
            &view,
            &Packet::new(pod_ep("dev/tool"), pod_ep("prod/web"), TCP, 1).with_family(IpFamily::V6)
        )
        .allowed
    );
}

#[test]
fn matrices_parse_and_compare() {
    let pods = [pod_ep("prod/web"), pod_ep("dev/tool")];
    assert!(Reachability::parse(&pods, &[".."]).is_err());
    assert!(Reachability::parse(&pods, &["..", ".?"]).is_err());
    assert!(Reachability::parse(&pods, &["..", "..."]).is_err());
    let expected = Reachability::parse(&pods, &[". X", ".."]).unwrap();
    let actual = Reachability::predict(&cluster(&[]), &pods, TCP, 80, None);
    let wrong = expected.mismatches(&actual);
    assert_eq!(wrong.len(), 1);
    assert_eq!(
        (wrong[0].from.to_string(), wrong[0].to.to_string()),
        ("prod/web".into(), "dev/tool".into())
    );
    assert!(actual.to_string().contains("dev/tool"));
}
