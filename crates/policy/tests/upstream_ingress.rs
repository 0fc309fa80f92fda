//! Upstream e2e NetworkPolicy cases (kubernetes
//! `test/e2e/network/netpol/network_policy.go`), ingress side, with the full
//! 9x9 truth table of the x/y/z × a/b/c model in both families.
//!
//! Rows are sources and columns destinations, in the order
//! x/a x/b x/c | y/a y/b y/c | z/a z/b z/c; `.` reachable, `X` blocked.
//! Upstream tests probe a subset of the pods; the expectations here are the
//! same rules (`ExpectPeer`, `ExpectAllIngress`, ...) applied to all nine.
//! Where upstream's own table sets a pod-to-itself cell, so does this one.

mod support;

use serde_json::json;
use support::*;

/// Everyone reaches everyone but x/a, reached only from the rows marked.
fn only_into_xa(from: [bool; 9]) -> [&'static str; 9] {
    from.map(|ok| if ok { "... ... ..." } else { "X.. ... ..." })
}

#[test]
fn no_policy_all_open() {
    assert_matrix(&netpol_model(), TCP, 80, ALL_OPEN);
}

#[test]
fn default_deny_ingress() {
    // "should support a 'default-deny-ingress' policy" (TCP, UDP and SCTP).
    let mut view = netpol_model();
    view.policies
        .push(policy("x/deny-ingress", json!({"podSelector": {}})));
    for protocol in [TCP, UDP, SCTP] {
        assert_matrix(&view, protocol, 80, ["XXX ... ..."; 9]);
    }
}

#[test]
fn pod_selector_same_namespace() {
    // "should enforce policy to allow traffic from pods within server
    // namespace based on PodSelector", and its MatchExpressions twin.
    for from in [
        json!({"podSelector": {"matchLabels": {"pod": "b"}}}),
        json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}}),
    ] {
        let mut view = netpol_model();
        view.policies.push(policy(
            "x/x-a-allows-x-b",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [from]}]}),
        ));
        let mut allowed = [false; 9];
        allowed[1] = true; // x/b
        assert_matrix(&view, TCP, 80, only_into_xa(allowed));
    }
}

#[test]
fn allow_ingress_for_a_target_over_deny_all() {
    // "should enforce policy to allow ingress traffic for a target".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/deny-all",
        json!({"podSelector": {}, "ingress": []}),
    ));
    view.policies.push(policy(
        "x/allow-all-to-a",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"podSelector": {}, "namespaceSelector": {}}]}]}),
    ));
    assert_matrix(&view, TCP, 80, [".XX ... ..."; 9]);
}

#[test]
fn allow_from_all_namespaces() {
    // "should enforce policy to allow ingress traffic from pods in all namespaces".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-from-another-ns",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {}}}]}]}),
    ));
    assert_matrix(&view, TCP, 80, ALL_OPEN);
}

#[test]
fn namespace_selector_other_namespace() {
    // "... only from a different namespace, based on NamespaceSelector", its
    // MatchExpressions twin, and the "using default ns label" variant.
    for selector in [
        json!({"matchLabels": {"kubernetes.io/metadata.name": "y"}}),
        json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["y"]}]}),
        json!({"matchLabels": {"ns": "y"}}),
    ] {
        let mut view = netpol_model();
        view.policies.push(policy(
            "x/allow-client-a-via-ns-selector",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": selector}]}]}),
        ));
        let y = [false, false, false, true, true, true, false, false, false];
        assert_matrix(&view, TCP, 80, only_into_xa(y));
    }
}

#[test]
fn pod_selector_or_namespace_selector() {
    // "should enforce policy based on PodSelector or NamespaceSelector":
    // upstream expects x/a -> x/a and x/c -> x/a denied, all else allowed.
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-ns-y-match-selector",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]}},
            {"podSelector": {"matchLabels": {"pod": "b"}}}
        ]}]}),
    ));
    let allowed = [false, true, false, true, true, true, true, true, true];
    assert_matrix(&view, TCP, 80, only_into_xa(allowed));
}

#[test]
fn pod_selector_and_namespace_selector() {
    // "should enforce policy based on PodSelector and NamespaceSelector":
    // only y/b and z/b reach x/a.
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-ns-y-podselector-and-nsselector",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]},
            "podSelector": {"matchLabels": {"pod": "b"}}
        }]}]}),
    ));
    let allowed = [false, false, false, false, true, false, false, true, false];
    assert_matrix(&view, TCP, 80, only_into_xa(allowed));
}

#[test]
fn multiple_pod_selectors_and_namespace_selectors() {
    // "should enforce policy based on Multiple PodSelectors and NamespaceSelectors".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-ns-y-z-pod-b-c",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]},
            "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]}
        }]}]}),
    ));
    let allowed = [false, false, false, false, true, true, false, true, true];
    assert_matrix(&view, TCP, 80, only_into_xa(allowed));
}

#[test]
fn ports_and_stacked_policies() {
    // "should enforce policy based on Ports" (TCP, UDP, SCTP) and "should
    // enforce multiple, stacked policies with overlapping podSelectors".
    let y = [false, false, false, true, true, true, false, false, false];
    for (protocol, name) in [(TCP, "TCP"), (UDP, "UDP"), (SCTP, "SCTP")] {
        let rule = |port: u16| {
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                "ports": [{"port": port, "protocol": name}]
            }]})
        };
        let mut view = netpol_model();
        view.policies
            .push(policy("x/allow-client-a-via-ns-selector", rule(81)));
        assert_matrix(&view, protocol, 81, only_into_xa(y));
        assert_matrix(&view, protocol, 80, only_into_xa([false; 9]));
        view.policies
            .push(policy("x/allow-client-a-via-ns-selector-80", rule(80)));
        assert_matrix(&view, protocol, 80, only_into_xa(y));
    }
}

#[test]
fn allow_all_policy() {
    // "should support allow-all policy".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-all",
        json!({"podSelector": {}, "ingress": [{}]}),
    ));
    assert_matrix(&view, TCP, 80, ALL_OPEN);
    assert_matrix(&view, TCP, 81, ALL_OPEN);
}

#[test]
fn named_port_ingress() {
    // "should allow ingress access on one named port".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-all",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
    ));
    assert_matrix(&view, TCP, 81, ALL_OPEN);
    assert_matrix(&view, TCP, 80, ["XXX ... ..."; 9]);
    // The name is TCP's: UDP 81 is not "serve-81-tcp".
    assert_matrix(&view, UDP, 81, ["XXX ... ..."; 9]);
}

#[test]
fn named_port_from_namespace() {
    // "should allow ingress access from namespace on one named port".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-client-a-via-ns-selector-80",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
            "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}]
        }]}),
    ));
    let y = [false, false, false, true, true, true, false, false, false];
    assert_matrix(&view, TCP, 80, only_into_xa(y));
    assert_matrix(&view, TCP, 81, only_into_xa([false; 9]));
}

#[test]
fn deny_ingress_from_other_namespaces() {
    // "should deny ingress from pods on other namespaces".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/deny-empty-policy",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {}}}]}]}),
    ));
    let mut rows = ["XXX ... ..."; 9];
    rows[..3].fill("... ... ...");
    assert_matrix(&view, TCP, 80, rows);
}

#[test]
fn protocol_only_rule() {
    // "should enforce ingress policy allowing any port traffic to a server on
    // a specific protocol".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-ingress-by-proto",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"protocol": "TCP"}]}]}),
    ));
    assert_matrix(&view, TCP, 80, ALL_OPEN);
    assert_matrix(&view, TCP, 81, ALL_OPEN);
    assert_matrix(&view, UDP, 80, only_into_xa([false; 9]));
}

#[test]
fn allow_all_takes_precedence_over_narrower_ingress() {
    // "should enforce multiple ingress policies with ingress allow-all policy
    // taking precedence".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-ingress-port-80",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
    ));
    assert_matrix(&view, TCP, 81, ["XXX ... ..."; 9]);
    view.policies.push(policy(
        "x/allow-ingress",
        json!({"podSelector": {}, "ingress": [{}]}),
    ));
    assert_matrix(&view, TCP, 81, ALL_OPEN);
}

#[test]
fn sctp_and_udp_rules_are_not_tcp() {
    // "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP'",
    // "should properly isolate pods that are selected by a policy allowing
    // SCTP", "should not allow access by TCP when a policy specifies only UDP".
    let mut view = netpol_model();
    view.policies
        .push(policy("x/deny-ingress", json!({"podSelector": {}})));
    view.policies.push(policy(
        "x/allow-only-sctp-ingress-on-port-81",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 81, "protocol": "SCTP"}]}]}),
    ));
    assert_matrix(&view, TCP, 81, ["XXX ... ..."; 9]);
    assert_matrix(&view, SCTP, 81, [".XX ... ..."; 9]);

    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-only-udp-ingress-on-port-81",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 81, "protocol": "UDP"}]}]}),
    ));
    assert_matrix(&view, TCP, 81, only_into_xa([false; 9]));
    assert_matrix(&view, UDP, 81, ALL_OPEN);
}

#[test]
fn port_range() {
    // endPort (KEP-2079): 80-81 inclusive from namespace y; 81-82 leaves 80 out.
    let y = [false, false, false, true, true, true, false, false, false];
    let range = |first: u16, last: u16| {
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
            "ports": [{"port": first, "endPort": last}]
        }]})
    };
    let mut view = netpol_model();
    view.policies.push(policy("x/range-80-81", range(80, 81)));
    assert_matrix(&view, TCP, 80, only_into_xa(y));
    assert_matrix(&view, TCP, 81, only_into_xa(y));
    assert_matrix(&view, UDP, 80, only_into_xa([false; 9]));
    view.policies[0] = policy("x/range-81-82", range(81, 82));
    assert_matrix(&view, TCP, 80, only_into_xa([false; 9]));
    assert_matrix(&view, TCP, 81, only_into_xa(y));
}
