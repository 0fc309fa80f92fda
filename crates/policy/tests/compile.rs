//! The compiler's output: golden rulesets for a few clusters (regenerate
//! with `WEFT_UPDATE_GOLDEN=1 cargo test -p weft-policy --test compile`),
//! and deltas that touch only what changed.

mod support;

use std::net::IpAddr;

use serde_json::json;
use support::*;
use weft_policy::nft::{BASE_CHAIN, Ruleset, TABLE, render_delta, render_full};
use weft_policy::{Compiler, HOST_IF_PATTERN, LocalPod, NodeInputs, PolicyView, compile};

fn local(key: &str, ips: &[&str], host_if: &str) -> LocalPod {
    let (namespace, name) = key.split_once('/').unwrap();
    LocalPod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ips: ips.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect(),
        host_if: host_if.to_owned(),
    }
}

/// The three pods of `support::cluster`, all attached to this node.
fn node_all() -> NodeInputs {
    NodeInputs {
        pod_cidrs: ["10.1.0.0/24", "10.2.0.0/24", "fd01::/64", "fd02::/64"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect(),
        pods: vec![
            local("prod/web", &["10.1.0.1", "fd01::1"], "weft0000000web"),
            local("prod/db", &["10.1.0.2", "fd01::2"], "weft00000000db"),
            local("dev/tool", &["10.2.0.1", "fd02::1"], "weft000000tool"),
        ],
    }
}

fn prod_policies() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("prod/deny-all", json!({"podSelector": {}})),
        (
            "prod/web-from-dev",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{
                    "from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}],
                    "ports": [{"port": "http"}, {"port": 53, "protocol": "UDP"}]
                }]
            }),
        ),
        (
            "dev/tool-egress",
            json!({
                "podSelector": {"matchLabels": {"app": "tool"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]},
                    {"to": [{"podSelector": {"matchLabels": {"app": "db"}}, "namespaceSelector": {}}],
                     "ports": [{"port": "http"}, {"port": 7000, "endPort": 7100, "protocol": "SCTP"}]}
                ]
            }),
        ),
    ]
}

fn golden(name: &str, text: &str) {
    weft_testkit::golden(env!("CARGO_MANIFEST_DIR"), name, text);
}

#[test]
fn golden_dual_stack_isolation_named_ports_ipblock() {
    let view = cluster(&prod_policies());
    golden(
        "policy-dual-stack.nft",
        &render_full(&compile(&view, &node_all())),
    );
}

#[test]
fn golden_v4_node_of_the_netpol_model() {
    let mut view = netpol_model();
    view.policies = vec![policy(
        "x/allow-from-y-b",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"ns": "y"}},
                "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}
            }], "ports": [{"port": 80}]}]
        }),
    )];
    let node = NodeInputs {
        pod_cidrs: vec!["10.0.1.0/24".parse().unwrap()],
        pods: vec![local("x/a", &["10.0.1.1"], "weft00000000xa")],
    };
    golden("policy-v4-netpol.nft", &render_full(&compile(&view, &node)));
}

#[test]
fn compile_is_deterministic() {
    let view = cluster(&prod_policies());
    let mut node = node_all();
    let a = compile(&view, &node);
    node.pods.reverse();
    assert_eq!(a, compile(&view, &node));
}

/// A [`Compiler`] that reuses sets across compiles gives exactly what a
/// fresh compile gives, through every kind of change: policies changed,
/// added and removed, pod and namespace labels, pods coming and going.
#[test]
fn the_reusing_compiler_equals_a_fresh_compile_through_changes() {
    let mut view = cluster(&prod_policies());
    let mut node = node_all();
    let mut compiler = Compiler::new();
    let mut check = |view: &PolicyView, node: &NodeInputs, step: &str| {
        let fresh = compile(view, node);
        assert_eq!(compiler.compile(view, node), fresh, "{step}");
        // Twice: the second compile reuses everything the first built.
        assert_eq!(compiler.compile(view, node), fresh, "{step}, again");
    };
    check(&view, &node, "initial");

    let (key, mut spec) = prod_policies().remove(2);
    spec["egress"][1]["ports"][0] = json!({"port": "dns", "protocol": "UDP"});
    view.policies[2] = policy(key, spec);
    check(&view, &node, "policy changed (named port)");

    view.policies.push(policy(
        "prod/from-tier",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "front"}}}]}]}),
    ));
    check(&view, &node, "policy with a new selector added");

    view.pods[0].labels = labels(&[("app", "web"), ("tier", "back")]);
    check(&view, &node, "pod labels changed");

    view.namespaces[1].labels = labels(&[("team", "a")]);
    check(&view, &node, "namespace labels changed");

    view.pods.push(pod(
        "dev/new",
        &[("app", "db")],
        "node-1",
        &["10.2.0.2", "fd02::2"],
        &[("http", 8081, TCP)],
    ));
    check(&view, &node, "remote pod added");
    node.pods
        .push(local("dev/new", &["10.2.0.2", "fd02::2"], "weft0000000new"));
    check(&view, &node, "pod attached here");

    view.pods.remove(1);
    check(&view, &node, "pod removed from the model");

    view.policies.remove(1);
    check(&view, &node, "policy removed");
}

#[test]
fn host_if_pattern_matches_the_plugin_naming() {
    let name = weft_cni::plugin::naming::host_ifname("0123456789abcdef", "eth0");
    let prefix = HOST_IF_PATTERN.trim_end_matches('*');
    assert!(name.starts_with(prefix), "{name} vs {HOST_IF_PATTERN}");
    assert_eq!(prefix, weft_cni::plugin::naming::HOST_IF_PREFIX);
}

#[test]
fn equal_selectors_share_one_set_and_equal_chains_are_shared() {
    // Policies in two namespaces with the same namespaceSelector peer: one
    // set per family. web (deny-all + p1) and tool (p2) resolve to the same
    // rules: one chain; db (deny-all only) has its own.
    let peer = json!([{"namespaceSelector": {"matchLabels": {"team": "b"}}}]);
    let view = cluster(&[
        ("prod/deny-all", json!({"podSelector": {}})),
        (
            "prod/p1",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": peer}]}),
        ),
        (
            "dev/p2",
            json!({"podSelector": {"matchLabels": {"app": "tool"}}, "ingress": [{"from": peer}]}),
        ),
    ]);
    let rs = compile(&view, &node_all());
    let ingress = &rs.maps["ingress4"].elements;
    assert_eq!(ingress["10.1.0.1"], ingress["10.2.0.1"]);
    assert_ne!(ingress["10.1.0.1"], ingress["10.1.0.2"]);
    let selector_sets: Vec<&String> = rs.sets.keys().filter(|n| n.starts_with("s_")).collect();
    assert_eq!(selector_sets.len(), 2, "{selector_sets:?}");
    let pod_chains = rs.chains.keys().filter(|n| n.starts_with("in_")).count();
    assert_eq!(pod_chains, 2);
}

#[test]
fn pod_missing_from_the_model_is_isolated_by_namespace_wide_policy() {
    let view = cluster(&[("prod/deny-all", json!({"podSelector": {}}))]);
    let mut node = node_all();
    node.pods
        .push(local("prod/new", &["10.1.0.9"], "weft0000000new"));
    let rs = compile(&view, &node);
    assert!(rs.sets["known4"].elements.contains("10.1.0.9"));
    let chain = rs.maps["ingress4"].elements["10.1.0.9"].trim_start_matches("jump ");
    assert_eq!(rs.chains[chain], ["drop"]);
}

#[test]
fn invalid_host_if_leaves_the_pod_blocked() {
    let view = cluster(&[]);
    let mut node = node_all();
    node.pods[0].host_if = "bad\" name".to_owned();
    let rs = compile(&view, &node);
    assert!(!rs.sets["known4"].elements.contains("10.1.0.1"));
    assert!(!render_full(&rs).contains("bad"));
}

#[test]
fn unchanged_ruleset_has_no_delta() {
    let view = cluster(&prod_policies());
    let rs = compile(&view, &node_all());
    assert_eq!(render_delta(&rs, &rs.clone()), None);
}

/// The delta's commands, one per line.
fn delta_lines(old: &Ruleset, new: &Ruleset) -> Vec<String> {
    render_delta(old, new)
        .expect("a delta")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn adding_a_pod_adds_elements_and_at_most_one_chain() {
    // Plus the shared sets that only its chain refers to (its egress
    // ipBlock and named-port sets): nothing else changes.
    let view = cluster(&prod_policies());
    let mut node = node_all();
    let tool = node.pods.pop().unwrap();
    let before = compile(&view, &node);
    node.pods.push(tool);
    let after = compile(&view, &node);
    let lines = delta_lines(&before, &after);
    let chains: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("add chain"))
        .collect();
    assert_eq!(chains.len(), 1, "{lines:#?}");
    let chain = chains[0].rsplit(' ').next().unwrap();
    for line in &lines {
        let ok = line.starts_with(&format!("add element {TABLE} "))
            || line.starts_with(&format!("add chain {TABLE} {chain}"))
            || line.starts_with(&format!("add rule {TABLE} {chain} "))
            || (line.starts_with(&format!("add set {TABLE} "))
                && after.chains[chain]
                    .iter()
                    .any(|r| r.contains(line.split(' ').nth(4).unwrap())));
        assert!(ok, "unexpected command {line:?} in\n{}", lines.join("\n"));
    }
    assert!(lines.iter().any(|l| l.contains("known4 { 10.2.0.1 }")));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"weft000000tool\" . 10.2.0.1"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("egress4 {{ 10.2.0.1 : jump {chain} }}")))
    );
}

#[test]
fn removing_a_pod_deletes_its_elements_and_chain() {
    let view = cluster(&prod_policies());
    let mut node = node_all();
    let before = compile(&view, &node);
    node.pods.pop();
    let after = compile(&view, &node);
    let lines = delta_lines(&before, &after);
    for line in &lines {
        assert!(
            line.starts_with(&format!("delete element {TABLE} "))
                || line.starts_with(&format!("delete chain {TABLE} eg_"))
                || line.starts_with(&format!("delete set {TABLE} ")),
            "unexpected {line:?}"
        );
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("delete chain"))
            .count(),
        1
    );
    // Its egress sets (ipBlock, named port, selector) are used by no one else.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("delete set {TABLE} b_")))
    );
}

#[test]
fn changing_one_policy_touches_only_its_chains_and_sets() {
    let mut policies = prod_policies();
    let before = compile(&cluster(&policies), &node_all());
    // web-from-dev now also allows TCP 443: only web's ingress chain changes.
    policies[1].1["spec_unused"] = json!(null);
    policies[1].1["ingress"][0]["ports"]
        .as_array_mut()
        .unwrap()
        .push(json!({"port": 443}));
    let after = compile(&cluster(&policies), &node_all());
    let lines = delta_lines(&before, &after);
    let old_chain = before.maps["ingress4"].elements["10.1.0.1"].trim_start_matches("jump ");
    let new_chain = after.maps["ingress4"].elements["10.1.0.1"].trim_start_matches("jump ");
    let expected_prefixes = [
        format!("add chain {TABLE} {new_chain}"),
        format!("add rule {TABLE} {new_chain} "),
        format!("delete element {TABLE} ingress4 {{ 10.1.0.1 }}"),
        format!("delete element {TABLE} ingress6 {{ fd01::1 }}"),
        format!("add element {TABLE} ingress4 {{ 10.1.0.1 : jump {new_chain} }}"),
        format!("add element {TABLE} ingress6 {{ fd01::1 : jump {new_chain} }}"),
        format!("delete chain {TABLE} {old_chain}"),
    ];
    for line in &lines {
        assert!(
            expected_prefixes
                .iter()
                .any(|p| line.starts_with(p.as_str())),
            "unexpected {line:?} in\n{}",
            lines.join("\n")
        );
    }
    assert!(lines.iter().any(|l| l.contains("th dport 443 accept")));
    assert!(!lines.iter().any(|l| l.contains(BASE_CHAIN)));
}

#[test]
fn relabelling_a_peer_changes_set_elements_only() {
    let policies = prod_policies();
    let before = compile(&cluster(&policies), &node_all());
    let mut view: PolicyView = cluster(&policies);
    view.pods[1].labels.insert("app".into(), "other".into()); // db no longer app=db
    let after = compile(&view, &node_all());
    let lines = delta_lines(&before, &after);
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line.starts_with(&format!("delete element {TABLE} s_")),
            "{line:?}"
        );
    }
}

#[test]
fn a_retyped_set_falls_back_to_the_full_table() {
    let view = cluster(&prod_policies());
    let before = compile(&view, &node_all());
    let mut after = before.clone();
    after.sets.get_mut("known4").unwrap().flags = vec!["interval".into()];
    let text = render_delta(&before, &after).unwrap();
    assert!(text.starts_with(&format!("table {TABLE} {{}}\ndelete table {TABLE}\n")));
}
