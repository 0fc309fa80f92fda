//! A synthesized cluster for the policy benchmark: `N` pods over `N / 100`
//! nodes and `N / 100` namespaces (100 pods per node, as kubelet's default
//! limit of 110 allows), and `N` NetworkPolicies in five shapes taken from
//! what clusters run: app-to-app allow lists, namespace-and-tier peers,
//! egress with ipBlocks, `matchExpressions` with port ranges, and
//! monitoring scrapes on a named port.
//!
//! Everything is a pure function of `N`, so two runs (and two machines)
//! measure the same model.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result};
use ipnet::{IpNet, Ipv4Net};
use serde_json::{Value, json};
use weft_model::{ContainerPort, Labels, Namespace, NetworkPolicy, Pod, PodPhase, Protocol};
use weft_policy::{LocalPod, NAMESPACE_NAME_LABEL, NodeInputs, PolicyView};

/// Pods per node (and per namespace).
pub const PODS_PER_NODE: usize = 100;

/// Distinct `app` labels inside a namespace.
pub const APPS: usize = 20;

/// The node whose share is compiled and programmed.
pub const LOCAL_NODE: &str = "node-0";

/// The synthesized cluster and the local node's share of it.
#[derive(Debug, Clone)]
pub struct Synthesized {
    /// The whole cluster, as the agent's model holds it.
    pub view: PolicyView,
    /// [`LOCAL_NODE`]'s pod CIDR and attached pods.
    pub node: NodeInputs,
}

/// Nodes (and namespaces) for `pods` pods: at least one.
pub fn node_count(pods: usize) -> usize {
    pods.div_ceil(PODS_PER_NODE).max(1)
}

/// The cluster of `pods` pods and as many policies. Fails only when a
/// synthesized policy does not validate, which the unit tests rule out.
pub fn cluster(pods: usize) -> Result<Synthesized> {
    let nodes = node_count(pods);
    let namespaces = (0..nodes).map(namespace).collect();
    let pods: Vec<Pod> = (0..pods).map(|n| pod(n, nodes)).collect();
    let policies = (0..pods.len())
        .map(|p| {
            NetworkPolicy::from_value(&policy_json(p, nodes, None))
                .with_context(|| format!("synthesized policy pol-{p}"))
        })
        .collect::<Result<_>>()?;
    let view = PolicyView {
        namespaces,
        pods,
        policies,
        nodes: Vec::new(),
    };
    let node = local_share(&view);
    Ok(Synthesized { view, node })
}

impl Synthesized {
    /// One policy change as an operator makes it: policy `pol-0` (it
    /// selects a pod of [`LOCAL_NODE`]) gets one more port.
    pub fn change_policy(&mut self) -> Result<()> {
        let nodes = self.view.namespaces.len();
        let changed = NetworkPolicy::from_value(&policy_json(0, nodes, Some(8443)))
            .context("synthesized changed policy pol-0")?;
        let slot = self
            .view
            .policies
            .iter_mut()
            .find(|p| p.name == "pol-0")
            .context("policy pol-0 is in the model")?;
        *slot = changed;
        Ok(())
    }

    /// One pod created on [`LOCAL_NODE`]: in the model and attached.
    pub fn add_local_pod(&mut self) {
        let nodes = self.view.namespaces.len();
        // The next pod index that lands on node 0 keeps the address plan.
        let n = self.view.pods.len().div_ceil(nodes) * nodes;
        let pod = pod(n, nodes);
        let host_if = host_if(self.node.pods.len());
        self.node.pods.push(LocalPod {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            ips: pod.ips.clone(),
            host_if,
        });
        self.view.pods.push(pod);
    }
}

fn namespace(j: usize) -> Namespace {
    let name = format!("ns-{j}");
    Namespace {
        labels: Labels::from([
            (NAMESPACE_NAME_LABEL.to_owned(), name.clone()),
            ("team".to_owned(), format!("team-{}", j % 10)),
            (
                "env".to_owned(),
                if j % 2 == 0 { "prod" } else { "dev" }.to_owned(),
            ),
        ]),
        name,
    }
}

/// Pod `n`: on node `n % nodes`, its `i = n / nodes`-th pod there, in
/// namespace `i % nodes` (so a node's pods spread over namespaces), with
/// address `10.<node / 256>.<node % 256>.<i + 2>` from the node's /24.
fn pod(n: usize, nodes: usize) -> Pod {
    let node = n % nodes;
    let i = n / nodes;
    Pod {
        namespace: format!("ns-{}", i % nodes),
        name: format!("pod-{n}"),
        labels: Labels::from([
            // Mixed with `i` so that one node's pods do not share one app.
            ("app".to_owned(), format!("app-{}", (n * 7 + i) % APPS)),
            ("tier".to_owned(), format!("t{}", n % 5)),
        ]),
        node_name: Some(format!("node-{node}")),
        ips: vec![IpAddr::V4(node_address(node, i + 2))],
        ports: vec![
            ContainerPort {
                name: Some("http".to_owned()),
                port: 8080 + (n % 3) as u16,
                protocol: Protocol::Tcp,
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                port: 9090,
                protocol: Protocol::Tcp,
            },
        ],
        host_network: false,
        phase: PodPhase::Running,
        ready: true,
    }
}

/// Address `host` of node `node`'s /24 (`host` < 256: 100 pods per node).
fn node_address(node: usize, host: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (node / 256) as u8, (node % 256) as u8, host as u8)
}

/// Host-side veth name of the `i`-th attached pod (the plugin's pattern).
fn host_if(i: usize) -> String {
    format!("weft{i:011x}")
}

/// Policy `p` in namespace `p % nodes`; `extra_port` adds a port to its
/// first ingress rule (the "one policy change").
pub fn policy_json(p: usize, nodes: usize, extra_port: Option<u16>) -> Value {
    // q: the policy's index inside its namespace, picks the apps.
    let q = p / nodes;
    let app = |k: usize| format!("app-{}", k % APPS);
    let mut spec = match p % 5 {
        // Frontend to backend: another app of the namespace, a numeric and
        // a named port.
        0 => json!({
            "podSelector": {"matchLabels": {"app": app(q)}},
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"app": app(q + 1)}}}],
                "ports": [{"port": 80}, {"port": "http"}]
            }]
        }),
        // A team's tier from other namespaces: namespace AND pod selector
        // in one peer.
        1 => json!({
            "podSelector": {"matchLabels": {"app": app(q)}},
            "ingress": [{
                "from": [{
                    "namespaceSelector": {"matchLabels": {"team": format!("team-{}", p % 10)}},
                    "podSelector": {"matchLabels": {"tier": format!("t{}", p % 5)}}
                }],
                "ports": [{"port": "http", "protocol": "TCP"}]
            }]
        }),
        // Egress lock-down: an external range with a hole, DNS, and one
        // app on its named port.
        2 => json!({
            "podSelector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": [app(q), app(q + 3)]}
            ]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [
                {"to": [{"ipBlock": {
                    "cidr": format!("172.{}.0.0/16", 16 + p % 16),
                    "except": [format!("172.{}.{}.0/24", 16 + p % 16, p % 256)]
                }}]},
                {"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}}}],
                 "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                {"to": [{"podSelector": {"matchLabels": {"app": app(q + 2)}}}],
                 "ports": [{"port": "http"}]}
            ]
        }),
        // Set-based selectors and a port range from production
        // namespaces.
        3 => json!({
            "podSelector": {"matchExpressions": [
                {"key": "tier", "operator": "In", "values": [format!("t{}", q % 5)]},
                {"key": "app", "operator": "Exists"}
            ]},
            "ingress": [{
                "from": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod"]},
                    {"key": "team", "operator": "NotIn", "values": [format!("team-{}", p % 10)]}
                ]}}],
                "ports": [{"port": 8000, "endPort": 8100}]
            }]
        }),
        // Monitoring scrapes from any namespace, plus a load balancer
        // range.
        _ => json!({
            "podSelector": {"matchLabels": {"app": app(q)}},
            "ingress": [
                {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "prometheus"}}}],
                 "ports": [{"port": "metrics"}]},
                {"from": [{"ipBlock": {"cidr": format!("192.168.{}.0/24", p % 256)}}],
                 "ports": [{"port": 443}]}
            ]
        }),
    };
    if let Some(port) = extra_port {
        if let Some(ports) = spec["ingress"][0]["ports"].as_array_mut() {
            ports.push(json!({"port": port}));
        } else {
            spec["ingress"][0]["ports"] = json!([{"port": port}]);
        }
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("pol-{p}"), "namespace": format!("ns-{}", p % nodes)},
        "spec": spec,
    })
}

/// [`LOCAL_NODE`]'s pods as the agent finds them attached, and its /24.
fn local_share(view: &PolicyView) -> NodeInputs {
    let pods = view
        .pods
        .iter()
        .filter(|p| p.node_name.as_deref() == Some(LOCAL_NODE))
        .enumerate()
        .map(|(i, p)| LocalPod {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            ips: p.ips.clone(),
            host_if: host_if(i),
        })
        .collect();
    NodeInputs {
        pod_cidrs: vec![IpNet::V4(
            Ipv4Net::new(node_address(0, 0), 24).expect("24 is a valid IPv4 prefix length"),
        )],
        pods,
    }
}

#[cfg(test)]
#[path = "synth_tests.rs"]
mod tests;
