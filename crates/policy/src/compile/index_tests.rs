//! The indexes must give exactly what a scan with the evaluator's
//! predicates gives, for every kind of selector term (indexable or not)
//! and on both paths of each index.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde_json::json;
use weft_model::{LabelSelector, Labels, NetworkPolicy, Operator, Pod, Requirement};

use super::{NamespacePolicies, PodIndex};
use crate::compile::peers::PeerPod;
use crate::evaluate::selector_peer_matches;
use crate::view::unknown_pod;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().copied().collect()
}

fn namespace_labels(ns: &str) -> Labels {
    let team = if ns.ends_with('0') || ns.ends_with('2') {
        "a"
    } else {
        "b"
    };
    let mut l = labels(&[("team", team)]);
    l.insert(crate::NAMESPACE_NAME_LABEL.to_owned(), ns.to_owned());
    l
}

/// Pods over four namespaces with overlapping labels, some without the
/// labels the selectors ask for, one on the host network.
fn pods() -> Vec<Pod> {
    (0..60)
        .map(|i| {
            let mut pod = unknown_pod(&format!("ns-{}", i % 4), &format!("pod-{i}"));
            if i % 7 != 0 {
                pod.labels
                    .insert("app".to_owned(), format!("app-{}", i % 5));
            }
            if i % 3 != 0 {
                pod.labels.insert("tier".to_owned(), format!("t{}", i % 2));
            }
            pod.host_network = i == 13;
            pod
        })
        .collect()
}

fn requirement(key: &str, op: Operator, values: &[&str]) -> Requirement {
    Requirement::new(key, op, values)
}

fn selector(pairs: &[(&str, &str)], expressions: Vec<Requirement>) -> LabelSelector {
    LabelSelector {
        match_labels: labels(pairs),
        match_expressions: expressions,
    }
}

/// Pod selectors of every shape: empty, one or two labels, a label no pod
/// has, and each operator.
fn pod_selectors() -> Vec<Option<LabelSelector>> {
    vec![
        None,
        Some(selector(&[], vec![])),
        Some(selector(&[("app", "app-1")], vec![])),
        Some(selector(&[("app", "app-2"), ("tier", "t0")], vec![])),
        Some(selector(&[("app", "nobody")], vec![])),
        Some(selector(
            &[],
            vec![requirement("app", Operator::In, &["app-0", "app-3"])],
        )),
        Some(selector(
            &[],
            vec![requirement("app", Operator::NotIn, &["app-0"])],
        )),
        Some(selector(
            &[],
            vec![requirement("tier", Operator::Exists, &[])],
        )),
        Some(selector(
            &[],
            vec![requirement("tier", Operator::DoesNotExist, &[])],
        )),
        Some(selector(
            &[("tier", "t1")],
            vec![requirement("app", Operator::In, &["app-1", "app-4"])],
        )),
    ]
}

fn namespace_selectors() -> Vec<Option<LabelSelector>> {
    vec![
        None,
        Some(selector(&[], vec![])),
        Some(selector(&[("team", "a")], vec![])),
        Some(selector(
            &[],
            vec![requirement("team", Operator::NotIn, &["a"])],
        )),
        Some(selector(&[("team", "nobody")], vec![])),
    ]
}

#[test]
fn selector_members_equal_a_scan_with_the_evaluator() {
    let pods = pods();
    let peers: Vec<PeerPod<'_>> = pods
        .iter()
        .map(|pod| PeerPod {
            pod,
            ips: Cow::Borrowed(&pod.ips),
        })
        .collect();
    let mut index = PodIndex::new(&peers, namespace_labels);
    for policy_namespace in ["ns-0", "ns-3", "ns-none"] {
        for ns in &namespace_selectors() {
            for pod_selector in &pod_selectors() {
                let expected: Vec<usize> = (0..pods.len())
                    .filter(|i| {
                        selector_peer_matches(
                            policy_namespace,
                            ns.as_ref(),
                            pod_selector.as_ref(),
                            &pods[*i],
                            |n| Cow::Owned(namespace_labels(n)),
                        )
                    })
                    .collect();
                let got =
                    index.selector_members(policy_namespace, ns.as_ref(), pod_selector.as_ref());
                assert_eq!(got, expected, "{policy_namespace} {ns:?} {pod_selector:?}");
            }
        }
    }
}

fn policy(name: &str, pod_selector: &serde_json::Value) -> NetworkPolicy {
    NetworkPolicy::from_value(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "ns-0"},
        "spec": {"podSelector": pod_selector},
    }))
    .expect("valid policy")
}

#[test]
fn selecting_policies_equal_a_scan_on_both_paths() {
    let policies = [
        policy("all", &json!({})),
        policy("app-1", &json!({"matchLabels": {"app": "app-1"}})),
        policy(
            "app-1-t0",
            &json!({"matchLabels": {"app": "app-1", "tier": "t0"}}),
        ),
        policy("tier-t1", &json!({"matchLabels": {"tier": "t1"}})),
        policy("app-1-again", &json!({"matchLabels": {"app": "app-1"}})),
        policy(
            "in",
            &json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["app-2", "app-1"]}]}),
        ),
    ];
    let mut by_namespace = NamespacePolicies::default();
    for p in &policies {
        by_namespace.push(p);
    }
    // The first query scans, later ones use the index: ask twice each.
    for _ in 0..2 {
        for pod in pods() {
            let expected: BTreeSet<&str> = policies
                .iter()
                .filter(|p| p.pod_selector.matches(&pod.labels))
                .map(|p| p.name.as_str())
                .collect();
            let got = by_namespace.selecting(&pod.labels);
            let names: Vec<&str> = got.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names.iter().copied().collect::<BTreeSet<_>>(), expected);
            let mut order = names.clone();
            order.sort_by_key(|n| policies.iter().position(|p| p.name == *n));
            assert_eq!(names, order, "policies come in the order they were added");
        }
    }
}
