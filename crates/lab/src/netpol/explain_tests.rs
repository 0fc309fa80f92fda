use serde_json::json;
use weft_model::{ContainerPort, Labels, NetworkPolicy, Pod, PodPhase};

use super::*;

fn pod(ns: &str, name: &str, node: &str, ips: &[&str]) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        labels: Labels::from([("pod", name)]),
        node_name: Some(node.into()),
        ips: ips.iter().map(|a| a.parse().unwrap()).collect(),
        ports: vec![ContainerPort {
            name: Some("serve-80-tcp".into()),
            port: 80,
            protocol: Protocol::Tcp,
        }],
        host_network: false,
        phase: PodPhase::Running,
        ready: true,
    }
}

fn policy(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    NetworkPolicy::from_value(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap()
}

fn snapshot(policies: Vec<NetworkPolicy>) -> Snapshot {
    Snapshot {
        revision: 7,
        pods: vec![
            pod("x", "a", "node1", &["10.244.1.2", "fd00:1::2"]),
            pod("x", "b", "node2", &["10.244.2.2", "fd00:2::2"]),
        ],
        policies,
        ..Snapshot::default()
    }
}

fn query(from: &str, to: &str, port: &str) -> ExplainQuery {
    let (port, protocol) = parse_port(port).unwrap();
    ExplainQuery {
        from: parse_endpoint(from).unwrap(),
        to: parse_endpoint(to).unwrap(),
        port,
        protocol,
        family: None,
    }
}

#[test]
fn arguments_parse() {
    assert_eq!(parse_endpoint("x/a").unwrap(), Endpoint::pod("x", "a"));
    assert_eq!(
        parse_endpoint("fd00::1").unwrap(),
        Endpoint::Ip("fd00::1".parse().unwrap())
    );
    for bad in ["a", "x/", "/a", "x/a/b", "10.0.0.300"] {
        assert!(parse_endpoint(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_port("80/TCP").unwrap(), (80, Protocol::Tcp));
    assert_eq!(parse_port("53/udp").unwrap(), (53, Protocol::Udp));
    assert_eq!(parse_port("81").unwrap(), (81, Protocol::Tcp));
    for bad in ["0/TCP", "80/ICMP", "x/TCP", "70000"] {
        assert!(parse_port(bad).is_err(), "{bad}");
    }
    assert!(parse_family("5").is_err());
}

#[test]
fn deny_all_is_denied_by_isolation_naming_the_policy() {
    let snap = snapshot(vec![policy("x", "deny-all", json!({"podSelector": {}}))]);
    let e = explain(&snap, &query("x/a", "x/b", "80/TCP")).unwrap();
    assert!(!e.allowed);
    assert_eq!(e.family, Some(4));
    assert_eq!(e.from.address, Some("10.244.1.2".parse().unwrap()));
    assert_eq!(e.to.node.as_deref(), Some("node2"));
    assert!(e.egress.allowed && !e.egress.isolated);
    assert_eq!(e.ingress.selected_by, ["x/deny-all"]);
    let text = e.render();
    assert_eq!(
        text,
        "x/a (10.244.1.2) -> x/b (10.244.2.2) TCP/80 IPv4: DENIED  (revision 7)\n\
         \x20 egress from x/a: allowed: not isolated, no policy selects x/a for egress\n\
         \x20 ingress to x/b: denied by isolation, selected by x/deny-all; none of their \
         ingress rules allows it\n"
    );
}

#[test]
fn allowing_rules_are_named_with_their_path_and_match() {
    let snap = snapshot(vec![
        policy("x", "deny-all", json!({"podSelector": {}})),
        policy(
            "x",
            "allow-a",
            json!({"podSelector": {"matchLabels": {"pod": "b"}},
                   "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}},
                                         {"podSelector": {"matchLabels": {"pod": "a"}}}],
                                "ports": [{"port": "serve-80-tcp"}]}]}),
        ),
    ]);
    let mut q = query("x/a", "x/b", "80/TCP");
    q.family = Some(6);
    let e = explain(&snap, &q).unwrap();
    assert!(e.allowed);
    assert_eq!(e.to.address, Some("fd00:2::2".parse().unwrap()));
    assert_eq!(e.ingress.selected_by, ["x/deny-all", "x/allow-a"]);
    let by = &e.ingress.allowed_by;
    assert_eq!(by.len(), 1);
    assert_eq!(by[0].path, "spec.ingress[0].from[1].ports[0]");
    assert_eq!(
        by[0].matched,
        "podSelector pod=a (policy's namespace), TCP/serve-80-tcp"
    );
    assert!(e.render().contains(
        "  ingress to x/b: allowed by a rule (isolated by x/deny-all, x/allow-a)\n    \
         x/allow-a spec.ingress[0].from[1].ports[0]: podSelector pod=a"
    ));
    // Named port 80 does not cover 81.
    assert!(
        !explain(&snap, &query("x/a", "x/b", "81/TCP"))
            .unwrap()
            .allowed
    );
}

#[test]
fn addresses_resolve_to_pods_or_stay_outside() {
    let snap = snapshot(vec![policy(
        "x",
        "egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    )]);
    let e = explain(&snap, &query("10.244.1.2", "192.0.2.9", "53/UDP")).unwrap();
    assert_eq!(e.from.pod.as_deref(), Some("x/a"));
    assert_eq!(e.to.pod, None);
    assert!(!e.allowed);
    assert!(e.ingress.summary.contains("192.0.2.9 is not a pod"));
    assert!(e.egress.summary.contains("selected by x/egress"));
    let text = e.render();
    assert!(text.starts_with("10.244.1.2 (pod x/a) -> 192.0.2.9 UDP/53 IPv4: DENIED"));
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["egress"]["selectedBy"], json!(["x/egress"]));
    assert_eq!(v["to"]["address"], "192.0.2.9");
    assert_eq!(v["protocol"], "UDP");
}

#[test]
fn unknown_pods_and_wrong_families_are_errors_and_rejected_policies_noted() {
    let mut snap = snapshot(Vec::new());
    snap.rejected.push((
        "NetworkPolicy/x/bad".into(),
        "field spec.podSelector: nope".into(),
    ));
    let err = explain(&snap, &query("x/a", "x/zz", "80")).unwrap_err();
    assert!(err.to_string().contains("no pod x/zz"), "{err}");
    let mut q = query("x/a", "192.0.2.1", "80");
    q.family = Some(6);
    assert!(explain(&snap, &q).is_err());
    let e = explain(&snap, &query("x/a", "x/b", "80")).unwrap();
    assert!(e.allowed);
    assert!(e.render().contains("note: NetworkPolicy/x/bad is rejected"));
}

#[test]
fn the_cli_parses() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }
    let cli = Cli::try_parse_from([
        "policy",
        "--state-dir",
        "/tmp/l",
        "explain",
        "--from",
        "x/a",
        "--to",
        "10.0.0.1",
        "--port",
        "80/udp",
        "--family",
        "4",
        "--json",
    ])
    .unwrap();
    let PolicyCmd::Explain(a) = cli.policy.cmd;
    assert_eq!(a.port, (80, Protocol::Udp));
    assert_eq!(a.family, Some(4));
    assert!(a.json);
    assert!(
        Cli::try_parse_from([
            "policy", "explain", "--from", "x", "--to", "x/a", "--port", "80"
        ])
        .is_err()
    );
}
