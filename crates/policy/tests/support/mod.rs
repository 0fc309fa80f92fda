//! Builders shared by the evaluator's test suites: model objects, and
//! upstream's e2e netpol model (namespaces x, y, z; pods a, b, c; every pod
//! serving 80 and 81 over TCP, UDP and SCTP with ports named like
//! `serve-80-tcp`, as `test/e2e/network/netpol/model.go` builds them).

#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Value, json};
use weft_model::{ContainerPort, Labels, Namespace, NetworkPolicy, Node, Pod, PodPhase, Protocol};
use weft_policy::{Endpoint, IpFamily, PolicyView, Reachability};

pub const TCP: Protocol = Protocol::Tcp;
pub const UDP: Protocol = Protocol::Udp;
pub const SCTP: Protocol = Protocol::Sctp;

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().copied().collect()
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub fn namespace(name: &str, pairs: &[(&str, &str)]) -> Namespace {
    Namespace {
        name: name.to_owned(),
        labels: labels(pairs),
    }
}

/// A running pod on `node` with `ips` and named container ports
/// `(name, port, protocol)`.
pub fn pod(
    key: &str,
    pairs: &[(&str, &str)],
    node: &str,
    ips: &[&str],
    ports: &[(&str, u16, Protocol)],
) -> Pod {
    let (namespace, name) = key.split_once('/').unwrap();
    Pod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        labels: labels(pairs),
        node_name: Some(node.to_owned()),
        ips: ips.iter().map(|a| ip(a)).collect(),
        ports: ports
            .iter()
            .map(|(n, port, protocol)| ContainerPort {
                name: Some((*n).to_owned()),
                port: *port,
                protocol: *protocol,
            })
            .collect(),
        host_network: false,
        phase: PodPhase::Running,
        ready: true,
    }
}

pub fn node(name: &str, addresses: &[&str]) -> Node {
    Node {
        name: name.to_owned(),
        labels: BTreeMap::new(),
        pod_cidrs: Vec::new(),
        addresses: addresses.iter().map(|a| ip(a)).collect(),
        annotations: BTreeMap::new(),
    }
}

/// A policy `namespace/name` from its `spec`, as a manifest would carry it.
pub fn policy(key: &str, spec: Value) -> NetworkPolicy {
    let (namespace, name) = key.split_once('/').unwrap();
    NetworkPolicy::from_value(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("policy {key}: {e}"))
}

/// The 9x9 matrix of a cluster without isolation.
pub const ALL_OPEN: [&str; 9] = ["... ... ..."; 9];

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// Pod `ns/pod`'s IPv4 address: 10.0.<ns>.<pod>, 1-based.
pub fn v4_of(ns: usize, pod: usize) -> String {
    format!("10.0.{}.{}", ns + 1, pod + 1)
}

/// Pod `ns/pod`'s IPv6 address: fd00::<ns>:<pod>, 1-based.
pub fn v6_of(ns: usize, pod: usize) -> String {
    format!("fd00::{}:{}", ns + 1, pod + 1)
}

/// The address of pod `key` (e.g. `y/b`) in `family`.
pub fn addr_of(key: &str, family: IpFamily) -> String {
    let (ns, p) = key.split_once('/').unwrap();
    let ns = NAMESPACES.iter().position(|n| *n == ns).unwrap();
    let p = PODS.iter().position(|n| *n == p).unwrap();
    match family {
        IpFamily::V4 => v4_of(ns, p),
        IpFamily::V6 => v6_of(ns, p),
    }
}

/// Upstream's e2e model, dual-stack: namespaces labelled `ns=<name>`, pods
/// labelled `pod=<name>`, spread over two nodes.
pub fn netpol_model() -> PolicyView {
    let mut view = PolicyView {
        nodes: vec![
            node("node-1", &["192.168.0.1", "fc00::1"]),
            node("node-2", &["192.168.0.2", "fc00::2"]),
        ],
        ..PolicyView::default()
    };
    let mut ports = Vec::new();
    for port in [80u16, 81] {
        for (protocol, name) in [(TCP, "tcp"), (UDP, "udp"), (SCTP, "sctp")] {
            ports.push((format!("serve-{port}-{name}"), port, protocol));
        }
    }
    let ports: Vec<(&str, u16, Protocol)> = ports
        .iter()
        .map(|(n, p, pr)| (n.as_str(), *p, *pr))
        .collect();
    for (i, ns) in NAMESPACES.iter().enumerate() {
        view.namespaces.push(namespace(ns, &[("ns", ns)]));
        for (j, name) in PODS.iter().enumerate() {
            let node = if (i + j) % 2 == 0 { "node-1" } else { "node-2" };
            view.pods.push(pod(
                &format!("{ns}/{name}"),
                &[("pod", name)],
                node,
                &[&v4_of(i, j), &v6_of(i, j)],
                &ports,
            ));
        }
    }
    view
}

/// The nine pods in row/column order: x/a x/b x/c y/a ... z/c.
pub fn all_pods() -> Vec<Endpoint> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| Endpoint::pod(ns, p)))
        .collect()
}

/// Asserts the evaluator's 9x9 matrix in both families.
pub fn assert_matrix(view: &PolicyView, protocol: Protocol, port: u16, rows: [&str; 9]) {
    for family in [IpFamily::V4, IpFamily::V6] {
        assert_matrix_in(view, protocol, port, Some(family), rows);
    }
}

/// Asserts the evaluator's 9x9 matrix in one family.
pub fn assert_matrix_in(
    view: &PolicyView,
    protocol: Protocol,
    port: u16,
    family: Option<IpFamily>,
    rows: [&str; 9],
) {
    let pods = all_pods();
    let expected = Reachability::parse(&pods, &rows).unwrap();
    let actual = Reachability::predict(view, &pods, protocol, port, family);
    let wrong = expected.mismatches(&actual);
    assert!(
        wrong.is_empty(),
        "{protocol:?}/{port} {family:?}: {wrong:?}\nexpected:\n{expected}\nactual:\n{actual}"
    );
}

/// Two namespaces: `prod` (team=a) with pods web (app=web, port http=8080)
/// and db (app=db, http=9090 — same name, other number), `dev` (team=b)
/// with pod tool. Pods on node-1 (192.168.0.1 / fc00::1).
pub fn cluster(policies: &[(&str, Value)]) -> PolicyView {
    PolicyView {
        namespaces: vec![
            namespace("prod", &[("team", "a")]),
            namespace("dev", &[("team", "b")]),
        ],
        pods: vec![
            pod(
                "prod/web",
                &[("app", "web"), ("tier", "front")],
                "node-1",
                &["10.1.0.1", "fd01::1"],
                &[("http", 8080, TCP), ("dns", 53, UDP)],
            ),
            pod(
                "prod/db",
                &[("app", "db")],
                "node-1",
                &["10.1.0.2", "fd01::2"],
                &[("http", 9090, TCP)],
            ),
            pod(
                "dev/tool",
                &[("app", "tool")],
                "node-1",
                &["10.2.0.1", "fd02::1"],
                &[],
            ),
        ],
        policies: policies.iter().map(|(k, s)| policy(k, s.clone())).collect(),
        nodes: vec![node("node-1", &["192.168.0.1", "fc00::1"])],
    }
}

/// The endpoint of pod `namespace/name`.
pub fn pod_ep(key: &str) -> Endpoint {
    let (ns, name) = key.split_once('/').unwrap();
    Endpoint::pod(ns, name)
}
