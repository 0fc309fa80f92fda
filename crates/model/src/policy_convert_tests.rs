//! NetworkPolicy conversion: defaulting, empty-vs-absent, and every
//! validation rule of upstream `pkg/apis/networking/validation`.

use serde_json::{Value, json};

use super::*;

fn policy(spec: Value) -> Result<NetworkPolicy, Error> {
    NetworkPolicy::from_value(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "x"},
        "spec": spec,
    }))
}

/// The error text of a rejected spec; it must name the policy and `field`.
fn rejected(spec: Value, field: &str, reason: &str) {
    let err = policy(spec.clone()).expect_err(&format!("accepted {spec}"));
    let text = err.to_string();
    assert!(
        text.contains("NetworkPolicy x/p") && text.contains(&format!("field {field}:")),
        "{spec}: {text}"
    );
    assert!(text.contains(reason), "{spec}: {text}");
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

#[test]
fn policy_types_default_as_the_api() {
    let types = |spec| policy(spec).unwrap().policy_types;
    let ingress_only = PolicyTypes {
        ingress: true,
        egress: false,
    };
    let both = PolicyTypes {
        ingress: true,
        egress: true,
    };
    // No rules at all: Ingress (a default-deny-ingress policy).
    assert_eq!(types(json!({"podSelector": {}})), ingress_only);
    // Egress rules present: Egress added, Ingress kept.
    assert_eq!(types(json!({"egress": [{}]})), both);
    // `egress: []` is not "an egress section" for defaulting (len == 0).
    assert_eq!(types(json!({"egress": []})), ingress_only);
    // An empty policyTypes list is defaulted like an absent one.
    assert_eq!(types(json!({"policyTypes": [], "egress": [{}]})), both);
    // Explicit lists win, even against present rules.
    assert_eq!(
        types(json!({"policyTypes": ["Egress"], "ingress": [{}]})),
        PolicyTypes {
            ingress: false,
            egress: true
        }
    );
    assert_eq!(types(json!({"policyTypes": ["Ingress", "Egress"]})), both);
}

#[test]
fn empty_and_absent_lists() {
    // Absent ingress and `ingress: []`: no rule (isolate, allow nothing).
    assert!(policy(json!({})).unwrap().ingress.is_empty());
    assert!(policy(json!({"ingress": []})).unwrap().ingress.is_empty());
    // `ingress: [{}]`: one rule with no peers and no ports = allow all.
    let p = policy(json!({"ingress": [{}]})).unwrap();
    assert_eq!(p.ingress, vec![PolicyRule::default()]);
    // `from: []` and `ports: []` are "empty or missing": all peers, all ports.
    let p = policy(json!({"ingress": [{"from": [], "ports": []}]})).unwrap();
    assert_eq!(p.ingress, vec![PolicyRule::default()]);
    // An absent podSelector selects every pod, like `{}`.
    assert!(policy(json!({})).unwrap().pod_selector.is_empty());
}

#[test]
fn full_policy_converts() {
    let p = policy(json!({
        "podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [{
            "from": [
                {"podSelector": {"matchLabels": {"role": "api"}}},
                {"namespaceSelector": {}},
                {"namespaceSelector": {"matchLabels": {"team": "a"}},
                 "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}},
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.3.4/32"]}},
                {"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}
            ],
            "ports": [
                {"port": 5432},
                {"protocol": "UDP", "port": 1000, "endPort": 2000},
                {"protocol": "SCTP"},
                {"port": "serve-80-tcp"}
            ]
        }],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
    }))
    .unwrap();
    assert_eq!(p.key(), "x/p");
    assert_eq!(&p.pod_selector.match_labels["app"], "db");
    let rule = &p.ingress[0];
    assert_eq!(rule.peers.len(), 5);
    assert!(matches!(
        &rule.peers[0],
        Peer::Selector { namespace_selector: None, pod_selector: Some(s) } if &s.match_labels["role"] == "api"
    ));
    assert!(matches!(
        &rule.peers[1],
        Peer::Selector { namespace_selector: Some(s), pod_selector: None } if s.is_empty()
    ));
    assert!(matches!(
        &rule.peers[2],
        Peer::Selector {
            namespace_selector: Some(_),
            pod_selector: Some(_)
        }
    ));
    assert_eq!(
        rule.peers[3],
        Peer::IpBlock(IpBlock {
            cidr: net("10.0.0.0/8"),
            except: vec![net("10.1.0.0/16"), net("10.2.3.4/32")]
        })
    );
    assert!(matches!(&rule.peers[4], Peer::IpBlock(b) if b.cidr == net("2001:db8::/32")));
    assert_eq!(
        rule.ports,
        vec![
            PolicyPort {
                protocol: Protocol::Tcp,
                port: Some(PortMatch::Range {
                    first: 5432,
                    last: 5432
                })
            },
            PolicyPort {
                protocol: Protocol::Udp,
                port: Some(PortMatch::Range {
                    first: 1000,
                    last: 2000
                })
            },
            PolicyPort {
                protocol: Protocol::Sctp,
                port: None
            },
            PolicyPort {
                protocol: Protocol::Tcp,
                port: Some(PortMatch::Named("serve-80-tcp".into()))
            },
        ]
    );
    assert!(p.policy_types.ingress && p.policy_types.egress);
}

#[test]
fn legacy_cidr_with_host_bits_is_its_network() {
    let p = policy(json!({"ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.7/24", "except": ["10.0.0.5/30"]}}
    ]}]}))
    .unwrap();
    assert_eq!(
        p.ingress[0].peers[0],
        Peer::IpBlock(IpBlock {
            cidr: net("10.0.0.0/24"),
            except: vec![net("10.0.0.4/30")]
        })
    );
}

#[test]
fn invalid_policies_name_the_field() {
    let ing = |rule: Value| json!({"ingress": [rule]});
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}),
            "spec.podSelector",
            "unknown operator",
        ),
        (
            ing(json!({"from": [{"podSelector": {"matchLabels": {"bad key!": "v"}}}]})),
            "spec.ingress[0].from[0].podSelector",
            "invalid label key",
        ),
        (
            json!({"egress": [{"to": [{"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]}]}),
            "spec.egress[0].to[0].namespaceSelector",
            "at least one value",
        ),
        (
            ing(json!({"ports": [{"port": 0}]})),
            "spec.ingress[0].ports[0].port",
            "between 1 and 65535",
        ),
        (
            ing(json!({"ports": [{"port": 70000}]})),
            "spec.ingress[0].ports[0].port",
            "between 1 and 65535",
        ),
        (
            ing(json!({"ports": [{"port": 80}, {"port": 90, "endPort": 80}]})),
            "spec.ingress[0].ports[1].endPort",
            "greater than or equal to `port`",
        ),
        (
            ing(json!({"ports": [{"port": 80, "endPort": 65536}]})),
            "spec.ingress[0].ports[0].endPort",
            "between 1 and 65535",
        ),
        (
            ing(json!({"ports": [{"port": "http", "endPort": 90}]})),
            "spec.ingress[0].ports[0].endPort",
            "non-numeric",
        ),
        (
            ing(json!({"ports": [{"endPort": 90}]})),
            "spec.ingress[0].ports[0].endPort",
            "not specified",
        ),
        (
            ing(json!({"ports": [{"port": "HTTP"}]})),
            "spec.ingress[0].ports[0].port",
            "alpha-numeric",
        ),
        (
            ing(json!({"ports": [{"port": "8080"}]})),
            "spec.ingress[0].ports[0].port",
            "at least one letter",
        ),
        (
            ing(json!({"ports": [{"port": "a--b"}]})),
            "spec.ingress[0].ports[0].port",
            "consecutive hyphens",
        ),
        (
            ing(json!({"ports": [{"port": "-web"}]})),
            "spec.ingress[0].ports[0].port",
            "begin or end with a hyphen",
        ),
        (
            ing(json!({"ports": [{"port": "a-very-long-port-name"}]})),
            "spec.ingress[0].ports[0].port",
            "1-15 characters",
        ),
        (
            ing(json!({"ports": [{"protocol": "ICMP", "port": 1}]})),
            "spec.ingress[0].ports[0].protocol",
            "supported values",
        ),
        (
            ing(json!({"ports": [{"protocol": "tcp"}]})),
            "spec.ingress[0].ports[0].protocol",
            "supported values",
        ),
        (
            ing(json!({"from": [{}]})),
            "spec.ingress[0].from[0]",
            "must specify a peer",
        ),
        (
            ing(json!({"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]})),
            "spec.ingress[0].from[0]",
            "both ipBlock and another peer",
        ),
        (
            ing(json!({"from": [{"ipBlock": {"cidr": ""}}]})),
            "spec.ingress[0].from[0].ipBlock.cidr",
            "Required",
        ),
        (
            ing(json!({"from": [{"ipBlock": {"cidr": "10.0.0.0"}}]})),
            "spec.ingress[0].from[0].ipBlock.cidr",
            "valid CIDR",
        ),
        (
            ing(json!({"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]})),
            "spec.ingress[0].from[0].ipBlock.cidr",
            "valid CIDR",
        ),
        (
            ing(json!({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]})),
            "spec.ingress[0].from[0].ipBlock.except[0]",
            "strict subset",
        ),
        (
            ing(json!({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]})),
            "spec.ingress[0].from[0].ipBlock.except[0]",
            "strict subset",
        ),
        (
            ing(json!({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}}]})),
            "spec.ingress[0].from[0].ipBlock.except[0]",
            "strict subset",
        ),
        (
            ing(json!({"from": [{"ipBlock": {"cidr": "fd00::/64", "except": ["fd00::/6x"]}}]})),
            "spec.ingress[0].from[0].ipBlock.except[0]",
            "valid CIDR",
        ),
        (
            json!({"policyTypes": ["Ingress", "Egress", "Ingress"]}),
            "spec.policyTypes",
            "more than two",
        ),
        (
            json!({"policyTypes": ["ingress"]}),
            "spec.policyTypes[0]",
            "supported values",
        ),
    ];
    for (spec, field, reason) in cases {
        rejected(spec, field, reason);
    }
}

#[test]
fn a_bad_policy_never_disturbs_the_others() {
    // Converting a batch keeps every good policy and reports the bad one.
    let docs = [
        json!({"ingress": [{}]}),
        json!({"ingress": [{"ports": [{"port": 0}]}]}),
        json!({"egress": [{}]}),
    ];
    let results: Vec<_> = docs.into_iter().map(policy).collect();
    assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
}

#[test]
fn metadata_and_decoding() {
    let unnamed = NetworkPolicy::from_value(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {}
    }));
    assert!(matches!(unnamed, Err(Error::MissingName { .. })));
    let default_ns = NetworkPolicy::from_value(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n"}
    }))
    .unwrap();
    assert_eq!(default_ns.key(), "default/n");
    let undecodable = NetworkPolicy::from_value(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "n"}, "spec": {"ingress": "everything"}
    }));
    assert!(matches!(undecodable, Err(Error::Decode { .. })));
}

/// Issue 4: converted lists keep no spare capacity (collecting through a
/// `Result` would leave room for four), since the agent holds every policy
/// of the cluster for as long as it exists.
#[test]
fn lists_hold_no_spare_capacity() {
    let p = policy(json!({
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
        "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 80}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]
    }))
    .unwrap();
    let exprs = &p.pod_selector.match_expressions;
    assert_eq!(exprs.len(), exprs.capacity());
    assert_eq!(p.ingress.len(), p.ingress.capacity());
    assert_eq!(p.egress.len(), p.egress.capacity());
    let rule = &p.ingress[0];
    assert_eq!(rule.peers.len(), rule.peers.capacity());
    assert_eq!(rule.ports.len(), rule.ports.capacity());
    let Peer::IpBlock(block) = &p.egress[0].peers[0] else {
        panic!("expected an ipBlock peer: {:?}", p.egress[0].peers[0]);
    };
    assert_eq!(block.except.len(), block.except.capacity());
}
