//! Reuse is real and bounded: a set is taken from the previous compile
//! while the peer inputs are unchanged, and rebuilt as soon as they change.
//! (That a reusing compile equals a fresh one is proved in
//! `tests/compile.rs`.)

use serde_json::json;
use weft_model::{ContainerPort, Labels, Namespace, NetworkPolicy, Pod, PodPhase, Protocol};

use super::*;
use crate::LocalPod;

const MARK: &str = "10.99.99.99";

fn pod(name: &str, ip: &str) -> Pod {
    Pod {
        namespace: "ns".into(),
        name: name.into(),
        labels: Labels::from([("app", name)]),
        node_name: Some("n".into()),
        ips: vec![ip.parse().unwrap()],
        ports: vec![ContainerPort {
            name: Some("http".into()),
            port: 80,
            protocol: Protocol::Tcp,
        }],
        host_network: false,
        phase: PodPhase::Running,
        ready: true,
    }
}

fn policy(port: u16) -> NetworkPolicy {
    NetworkPolicy::from_value(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": "ns", "name": "p"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"port": port}]}],
            "egress": [{"ports": [{"port": "http"}]}],
            "policyTypes": ["Ingress", "Egress"]
        }
    }))
    .unwrap()
}

/// Adds [`MARK`] to every cached set, so that a set taken from the cache
/// shows it and a rebuilt one does not.
fn mark(compiler: &mut Compiler) -> usize {
    let last = compiler.last.as_mut().expect("a compile was cached");
    for set in last.sets.values_mut() {
        set.elements.insert(MARK.to_owned());
    }
    last.sets.len()
}

fn marked(ruleset: &Ruleset) -> usize {
    ruleset
        .sets
        .values()
        .filter(|s| s.elements.contains(MARK))
        .count()
}

#[test]
fn sets_are_reused_until_a_peer_input_changes() {
    let mut view = PolicyView {
        namespaces: vec![Namespace {
            name: "ns".into(),
            labels: Labels::new(),
        }],
        pods: vec![pod("a", "10.0.0.2"), pod("b", "10.0.0.3")],
        policies: vec![policy(80)],
        nodes: Vec::new(),
    };
    let node = NodeInputs {
        pod_cidrs: vec!["10.0.0.0/24".parse().unwrap()],
        pods: vec![LocalPod {
            namespace: "ns".into(),
            name: "a".into(),
            ips: vec!["10.0.0.2".parse().unwrap()],
            host_if: "weft0a".into(),
        }],
    };
    let mut compiler = Compiler::new();
    compiler.compile(&view, &node);
    // The selector peer's set and the named port's set.
    assert_eq!(mark(&mut compiler), 2);

    view.policies = vec![policy(81)];
    assert_eq!(marked(&compiler.compile(&view, &node)), 2, "policy change");

    mark(&mut compiler);
    view.pods[1].labels = Labels::from([("app", "b"), ("v", "2")]);
    assert_eq!(marked(&compiler.compile(&view, &node)), 0, "pod change");

    mark(&mut compiler);
    view.namespaces[0].labels = Labels::from([("team", "x")]);
    assert_eq!(
        marked(&compiler.compile(&view, &node)),
        0,
        "namespace change"
    );

    mark(&mut compiler);
    compiler.reset();
    assert_eq!(marked(&compiler.compile(&view, &node)), 0, "reset");
}
