//! Upstream e2e NetworkPolicy cases (kubernetes
//! `test/e2e/network/netpol/network_policy.go`), egress, ipBlock and update
//! side, with the full 9x9 truth table in both families.
//!
//! Rows are sources and columns destinations, in the order
//! x/a x/b x/c | y/a y/b y/c | z/a z/b z/c; `.` reachable, `X` blocked.

mod support;

use serde_json::json;
use support::*;
use weft_policy::IpFamily;

#[test]
fn default_deny_all_and_deletion() {
    // "should support a 'default-deny-all' policy", then "should stop
    // enforcing policies after they are deleted".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/deny-all",
        json!({"podSelector": {}, "ingress": [], "egress": [], "policyTypes": ["Ingress", "Egress"]}),
    ));
    let rows = [
        "XXX XXX XXX",
        "XXX XXX XXX",
        "XXX XXX XXX",
        "XXX ... ...",
        "XXX ... ...",
        "XXX ... ...",
        "XXX ... ...",
        "XXX ... ...",
        "XXX ... ...",
    ];
    assert_matrix(&view, TCP, 80, rows);
    view.policies.clear();
    assert_matrix(&view, TCP, 80, ALL_OPEN);
}

#[test]
fn deny_egress_by_pod_selector_and_namespace() {
    // "should deny egress from pods based on PodSelector" and "... from all
    // pods in a namespace".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/deny-egress-pod-a",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"]}),
    ));
    let mut rows = ALL_OPEN;
    rows[0] = "XXX XXX XXX";
    assert_matrix(&view, TCP, 80, rows);

    let mut view = netpol_model();
    view.policies.push(policy(
        "x/deny-egress-ns-x",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    ));
    rows[..3].fill("XXX XXX XXX");
    assert_matrix(&view, TCP, 80, rows);
}

#[test]
fn named_port_egress() {
    // "should allow egress access on one named port": the name resolves on
    // each destination pod.
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
    ));
    assert_matrix(&view, TCP, 80, ALL_OPEN);
    let rows = [
        "XXX XXX XXX",
        "XXX XXX XXX",
        "XXX XXX XXX",
        "... ... ...",
        "... ... ...",
        "... ... ...",
        "... ... ...",
        "... ... ...",
        "... ... ...",
    ];
    assert_matrix(&view, TCP, 81, rows);
}

#[test]
fn ingress_and_egress_together() {
    // "should work with Ingress, Egress specified together".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-client-a-via-pod-selector",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
               "egress": [{"ports": [{"port": 80}]}],
               "policyTypes": ["Egress", "Ingress"]}),
    ));
    let port_80 = [
        "X.. ... ...",
        "... ... ...",
        "X.. ... ...",
        "X.. ... ...",
        "X.. ... ...",
        "X.. ... ...",
        "X.. ... ...",
        "X.. ... ...",
        "X.. ... ...",
    ];
    assert_matrix(&view, TCP, 80, port_80);
    let mut port_81 = port_80;
    port_81[0] = "XXX XXX XXX";
    assert_matrix(&view, TCP, 81, port_81);
}

#[test]
fn egress_denied_on_the_client_even_if_the_server_allows() {
    // "should support denying of egress traffic on the client side (even if
    // the server explicitly allows this traffic)": upstream's table blocks
    // y/a -> y/a too, self-traffic being subject to policy.
    let mut view = netpol_model();
    let x_a = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}},
                     "podSelector": {"matchLabels": {"pod": "a"}}});
    let y_a = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
                     "podSelector": {"matchLabels": {"pod": "a"}}});
    view.policies.push(policy(
        "x/allow-to-ns-y-pod-a",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"to": [y_a]}]}),
    ));
    for (name, target) in [("allow-from-xa-on-ya", "a"), ("allow-from-xa-on-yb", "b")] {
        view.policies.push(policy(
            &format!("y/{name}"),
            json!({"podSelector": {"matchLabels": {"pod": target}}, "ingress": [{"from": [x_a]}]}),
        ));
    }
    let rows = [
        "XXX .XX XXX",
        "... XX. ...",
        "... XX. ...",
        "... XX. ...",
        "... XX. ...",
        "... XX. ...",
        "... XX. ...",
        "... XX. ...",
        "... XX. ...",
    ];
    assert_matrix(&view, TCP, 80, rows);
}

#[test]
fn egress_to_other_namespace_pod() {
    // "should enforce egress policy allowing traffic to a server in a
    // different namespace based on PodSelector and NamespaceSelector".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-to-ns-y-pod-a",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"to": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
            "podSelector": {"matchLabels": {"pod": "a"}}
        }]}]}),
    ));
    let mut rows = ALL_OPEN;
    rows[0] = "XXX .XX XXX";
    assert_matrix(&view, TCP, 80, rows);
}

#[test]
fn egress_allow_all_takes_precedence() {
    // "should enforce multiple egress policies with egress allow-all policy
    // taking precedence".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-egress-port-80",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 80}]}]}),
    ));
    let mut rows = ALL_OPEN;
    rows[..3].fill("XXX XXX XXX");
    assert_matrix(&view, TCP, 81, rows);
    view.policies.push(policy(
        "x/allow-egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}),
    ));
    assert_matrix(&view, TCP, 81, ALL_OPEN);
}

#[test]
fn egress_namespace_not_in_default_label() {
    // "should enforce policy based on NamespaceSelector with MatchExpressions
    // using default ns label".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-ns-y-match-selector-for-immutable-ns-label",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector":
            {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["y"]}]}}]}]}),
    ));
    let mut rows = ALL_OPEN;
    rows[0] = "... XXX ...";
    assert_matrix(&view, TCP, 80, rows);
}

/// One ipBlock peer per family, so the same policy holds in both.
fn blocks(cidr: [&str; 2], except: [Option<String>; 2]) -> serde_json::Value {
    let peers: Vec<_> = cidr
        .iter()
        .zip(except)
        .map(|(c, e)| match e {
            Some(e) => json!({"ipBlock": {"cidr": c, "except": [e]}}),
            None => json!({"ipBlock": {"cidr": c}}),
        })
        .collect();
    json!(peers)
}

#[test]
fn egress_to_cidr_with_except_and_update() {
    let (v4, v6) = (IpFamily::V4, IpFamily::V6);
    let host = |key: &str| {
        [
            format!("{}/32", addr_of(key, v4)),
            format!("{}/128", addr_of(key, v6)),
        ]
    };
    // "should allow egress access to server in CIDR block".
    let yb = host("y/b");
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-client-a-via-cidr-egress-rule",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "policyTypes": ["Egress"], "egress": [{"to": blocks([&yb[0], &yb[1]], [None, None])}]}),
    ));
    let mut rows = ALL_OPEN;
    rows[0] = "XXX X.X XXX";
    assert_matrix(&view, TCP, 80, rows);

    // "should enforce except clause while egress access to server in CIDR
    // block": a large block around x/b, x/b itself excepted.
    let xb = host("x/b");
    view.policies[0] = policy(
        "x/allow-client-a-via-cidr-egress-rule",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"to": blocks(
            ["10.0.0.0/16", "fd00::/64"], [Some(xb[0].clone()), Some(xb[1].clone())])}]}),
    );
    rows[0] = ".X. ... ...";
    assert_matrix(&view, TCP, 80, rows);

    // "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except
    // is allowed": the policy updated to allow x/b alone.
    view.policies[0] = policy(
        "x/allow-client-a-via-cidr-egress-rule",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "policyTypes": ["Egress"], "egress": [{"to": blocks([&xb[0], &xb[1]], [None, None])}]}),
    );
    rows[0] = "X.X XXX XXX";
    assert_matrix(&view, TCP, 80, rows);

    // A v4-only block says nothing about v6 packets: in v6 x/a reaches nobody.
    view.policies[0] = policy(
        "x/v4-only",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
    );
    assert_matrix_in(&view, TCP, 80, Some(v4), ALL_OPEN);
    rows[0] = "XXX XXX XXX";
    assert_matrix_in(&view, TCP, 80, Some(v6), rows);
}

#[test]
fn ingress_and_egress_are_independent() {
    // "should enforce policies to check ingress and egress policies can be
    // controlled independently based on PodSelector".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-egress-for-target",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{}]}),
    ));
    assert_matrix(&view, TCP, 80, ALL_OPEN);
    view.policies.push(policy(
        "x/deny-ingress-via-label-selector",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}}),
    ));
    assert_matrix(&view, TCP, 80, ["X.. ... ..."; 9]);
}

#[test]
fn updates_to_policies_and_labels() {
    // "should enforce updated policy": allow-all mutated to deny-all.
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/mutate",
        json!({"podSelector": {}, "ingress": [{}]}),
    ));
    assert_matrix(&view, TCP, 81, ALL_OPEN);
    view.policies[0] = policy("x/mutate", json!({"podSelector": {}, "ingress": []}));
    assert_matrix(&view, TCP, 81, ["XXX ... ..."; 9]);

    // "should allow ingress access from updated namespace".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-client-a-via-ns-selector",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns2": "updated"}}}]}]}),
    ));
    assert_matrix(&view, TCP, 80, ["X.. ... ..."; 9]);
    view.namespaces[1]
        .labels
        .insert("ns2".into(), "updated".into());
    let mut rows = ["X.. ... ..."; 9];
    rows[3..6].fill("... ... ...");
    assert_matrix(&view, TCP, 80, rows);

    // "should allow ingress access from updated pod".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/allow-client-a-via-pod-selector",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b", "pod2": "updated"}}}]}]}),
    ));
    assert_matrix(&view, TCP, 80, ["X.. ... ..."; 9]);
    view.pods[1].labels.insert("pod2".into(), "updated".into());
    let mut rows = ["X.. ... ..."; 9];
    rows[1] = "... ... ...";
    assert_matrix(&view, TCP, 80, rows);

    // "should deny ingress access to updated pod".
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/deny-ingress-via-label-selector",
        json!({"podSelector": {"matchLabels": {"target": "isolated"}}}),
    ));
    assert_matrix(&view, TCP, 80, ALL_OPEN);
    view.pods[0]
        .labels
        .insert("target".into(), "isolated".into());
    assert_matrix(&view, TCP, 80, ["X.. ... ..."; 9]);
}

#[test]
fn egress_only_policy_types_leave_ingress_alone() {
    // policyTypes: [Egress] with an (empty) ingress section: ingress is not
    // isolated, egress allows all.
    let mut view = netpol_model();
    view.policies.push(policy(
        "x/egress-only",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [], "egress": [{}]}),
    ));
    assert_matrix(&view, TCP, 80, ALL_OPEN);
}
