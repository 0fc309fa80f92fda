//! The cluster models `lab up --model` creates: namespaces and pods, spread
//! round-robin over the nodes. Pure values, so tests see exactly what `up`
//! will start.

use std::collections::BTreeMap;

use weft_model::Protocol;

use crate::kubelet::PodSpec;

/// Which model to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// Namespaces `demo` and `team-a` with a few pods serving tcp/80 and
    /// udp/80.
    Demo,
    /// The NetworkPolicy test model: namespaces x, y, z with pods a, b, c,
    /// serving TCP and UDP on 80 and 81 (as the upstream e2e suite).
    Netpol,
    /// No namespaces and no pods.
    None,
}

/// Namespaces (with labels) and pods to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Namespaces and their labels (the lab adds
    /// `kubernetes.io/metadata.name`).
    pub namespaces: Vec<(String, BTreeMap<String, String>)>,
    /// Pods, each with its node chosen.
    pub pods: Vec<PodSpec>,
}

/// A pod of a model before its node is chosen: namespace, name, and its
/// one label.
type PodRow<'a> = (&'a str, String, &'a str, &'a str);

/// The model `kind` spread over `nodes`.
pub fn build(kind: ModelKind, nodes: &[String]) -> Model {
    let (namespaces, pods): (&[&str], Vec<PodRow<'_>>) = match kind {
        ModelKind::None => (&[], Vec::new()),
        ModelKind::Demo => (
            &["demo", "team-a"],
            vec![
                ("demo", "web-0".into(), "app", "web"),
                ("demo", "web-1".into(), "app", "web"),
                ("demo", "db-0".into(), "app", "db"),
                ("team-a", "client-0".into(), "app", "client"),
                ("team-a", "client-1".into(), "app", "client"),
            ],
        ),
        ModelKind::Netpol => (
            &["x", "y", "z"],
            ["x", "y", "z"]
                .iter()
                .flat_map(|ns| ["a", "b", "c"].map(|p| (*ns, p.to_string(), "pod", p)))
                .collect(),
        ),
    };
    let ports: Vec<(Protocol, u16)> = match kind {
        ModelKind::Netpol => vec![
            (Protocol::Tcp, 80),
            (Protocol::Tcp, 81),
            (Protocol::Udp, 80),
            (Protocol::Udp, 81),
        ],
        _ => vec![(Protocol::Tcp, 80), (Protocol::Udp, 80)],
    };
    let namespaces = namespaces
        .iter()
        .map(|ns| {
            (
                ns.to_string(),
                BTreeMap::from([("ns".to_string(), ns.to_string())]),
            )
        })
        .collect();
    let pods = pods
        .into_iter()
        .enumerate()
        .map(|(i, (ns, name, key, value))| PodSpec {
            namespace: ns.to_string(),
            name,
            node: (!nodes.is_empty()).then(|| nodes[i % nodes.len()].clone()),
            labels: BTreeMap::from([(key.to_string(), value.to_string())]),
            ports: ports.clone(),
        })
        .collect();
    Model { namespaces, pods }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node{i}")).collect()
    }

    #[test]
    fn netpol_is_nine_pods_round_robin_with_four_ports() {
        let m = build(ModelKind::Netpol, &nodes(2));
        assert_eq!(m.namespaces.len(), 3);
        assert_eq!(m.namespaces[1].1["ns"], "y");
        assert_eq!(m.pods.len(), 9);
        assert_eq!(m.pods[4].namespace, "y");
        assert_eq!(m.pods[4].name, "b");
        assert_eq!(m.pods[4].labels["pod"], "b");
        assert_eq!(m.pods[0].node.as_deref(), Some("node1"));
        assert_eq!(m.pods[1].node.as_deref(), Some("node2"));
        assert_eq!(m.pods[2].node.as_deref(), Some("node1"));
        assert_eq!(m.pods[0].ports.len(), 4);
    }

    #[test]
    fn demo_spreads_over_every_node() {
        let m = build(ModelKind::Demo, &nodes(3));
        assert_eq!(m.namespaces.len(), 2);
        let used: std::collections::BTreeSet<_> =
            m.pods.iter().filter_map(|p| p.node.clone()).collect();
        assert_eq!(used.len(), 3);
        assert!(build(ModelKind::None, &nodes(3)).pods.is_empty());
    }
}
