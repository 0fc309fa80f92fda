//! Kernel tests (root): a "node" namespace with pod namespaces attached by
//! `weft*` veths the way the plugin attaches them (/32 address, host route,
//! the host side answering ARP), the compiled table loaded into the node,
//! and real TCP connections compared with the evaluator's prediction; then
//! deltas, anti-spoofing and the no-window rule. Every namespace is a
//! `weft…` one of weft_testkit, removed on drop, also on failure.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use weft_model::NetworkPolicy;
use weft_policy::nft::{Ruleset, render_delta, render_full};
use weft_policy::{IpFamily, LocalPod, NodeInputs, Packet, PolicyView, compile, evaluate};
use weft_probe::{ProbeOpts, Protocol, ServeOpts, Server, Target, probe_many};
use weft_testkit::{NetNs, privileged, veth_between};

const PORTS: [u16; 2] = [80, 81];

/// One pod: its key, address, host interface and namespace.
struct PodNs {
    key: &'static str,
    ip: &'static str,
    host_if: &'static str,
    ns: NetNs,
}

/// The node and its pods (fields drop in order: servers stop before the
/// namespaces go).
struct Node {
    servers: Vec<Server>,
    pods: Vec<PodNs>,
    ns: NetNs,
    loaded: Option<Ruleset>,
}

impl Node {
    fn new() -> Node {
        let ns = NetNs::new("pol").unwrap();
        sysctl(&ns, "net.ipv4.ip_forward=1");
        let mut node = Node {
            servers: Vec::new(),
            pods: Vec::new(),
            ns,
            loaded: None,
        };
        for (key, ip, host_if) in [
            ("x/a", "10.244.1.11", "weftkt00000000a"),
            ("x/b", "10.244.1.12", "weftkt00000000b"),
            ("y/c", "10.244.1.13", "weftkt00000000c"),
            ("x/d", "10.244.1.14", "weftkt00000000d"),
        ] {
            let pod = NetNs::new("polp").unwrap();
            veth_between(&node.ns, host_if, &pod, "eth0").unwrap();
            pod.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"])
                .unwrap();
            // An on-link default route: the pod ARPs for every destination
            // and the host side answers (proxy ARP), as for a routed pod.
            pod.ip(&["route", "add", "default", "dev", "eth0"]).unwrap();
            sysctl(&node.ns, &format!("net.ipv4.conf.{host_if}.proxy_arp=1"));
            // Answer at once: the default random delay (up to 0.8 s) would
            // eat the probes' budget.
            sysctl(&node.ns, &format!("net.ipv4.neigh.{host_if}.proxy_delay=0"));
            node.ns
                .ip(&["route", "add", &format!("{ip}/32"), "dev", host_if])
                .unwrap();
            let opts = ServeOpts {
                ports: PORTS.iter().map(|p| (Protocol::Tcp, *p)).collect(),
                bind_v4: true,
                bind_v6: false,
            };
            node.servers
                .push(pod.run(|| Server::start(&opts)).unwrap().unwrap());
            node.pods.push(PodNs {
                key,
                ip,
                host_if,
                ns: pod,
            });
        }
        node
    }

    fn pod(&self, key: &str) -> &PodNs {
        self.pods.iter().find(|p| p.key == key).unwrap()
    }

    /// The node inputs with the pods `keys` attached (known to the table).
    fn inputs(&self, keys: &[&str]) -> NodeInputs {
        NodeInputs {
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
            pods: keys
                .iter()
                .map(|k| {
                    let p = self.pod(k);
                    let (namespace, name) = k.split_once('/').unwrap();
                    LocalPod {
                        namespace: namespace.into(),
                        name: name.into(),
                        ips: vec![p.ip.parse().unwrap()],
                        host_if: p.host_if.into(),
                    }
                })
                .collect(),
        }
    }

    /// Loads `ruleset`: whole the first time, as a delta afterwards.
    /// Returns the text applied.
    fn apply(&mut self, ruleset: Ruleset) -> String {
        let text = match &self.loaded {
            None => render_full(&ruleset),
            Some(old) => render_delta(old, &ruleset).unwrap_or_default(),
        };
        nft(&self.ns, &text);
        self.loaded = Some(ruleset);
        text
    }

    /// Whether each (from, to, port) connects, probed in parallel.
    fn reach(&self, cases: &[(&str, &str, u16)]) -> Vec<bool> {
        let targets: Vec<Target> = cases
            .iter()
            .map(|(from, to, port)| Target {
                netns: Some(self.pod(from).ns.path().to_path_buf()),
                address: self.pod(to).ip.parse().unwrap(),
                port: *port,
                protocol: Protocol::Tcp,
            })
            .collect();
        let opts = ProbeOpts {
            timeout: Duration::from_millis(800),
        };
        probe_many(&targets, &opts, targets.len())
            .into_iter()
            .map(|r| {
                assert!(!r.inconclusive, "{r:?}");
                r.connected
            })
            .collect()
    }

    /// Probes every pair of distinct pods among `keys` on both ports and
    /// asserts the kernel agrees with the evaluator.
    fn assert_matches_evaluator(&self, view: &PolicyView, keys: &[&str], step: &str) {
        let mut cases = Vec::new();
        for from in keys {
            for to in keys.iter().filter(|t| *t != from) {
                for port in PORTS {
                    cases.push((*from, *to, port));
                }
            }
        }
        let got = self.reach(&cases);
        let mut wrong = Vec::new();
        for ((from, to, port), connected) in cases.iter().zip(got) {
            let packet = Packet::new(pod_ep(from), pod_ep(to), Protocol::Tcp, *port)
                .with_family(IpFamily::V4);
            let expected = evaluate(view, &packet).allowed;
            if expected != connected {
                wrong.push(format!(
                    "{from} -> {to}:{port} expected {expected}, kernel {connected}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{step}: {wrong:#?}");
    }
}

fn sysctl(ns: &NetNs, setting: &str) {
    ns.exec("sysctl", &["-q", "-w", setting]).unwrap();
}

/// Runs `nft -f -` with `script` inside `ns`.
fn nft(ns: &NetNs, script: &str) {
    if let Err(e) = ns.exec_stdin("nft", &["-f", "-"], script) {
        panic!("{e:#}\n{script}");
    }
}

/// The four pods of the test node in the model: namespaces x and y,
/// named port `web` = 80 on x/a and 81 on x/b.
fn view(policies: &[NetworkPolicy]) -> PolicyView {
    let web = |port| vec![("web", port, TCP)];
    PolicyView {
        namespaces: vec![
            namespace("x", &[("ns", "x")]),
            namespace("y", &[("ns", "y")]),
        ],
        pods: vec![
            pod("x/a", &[("pod", "a")], "node-1", &["10.244.1.11"], &web(80)),
            pod("x/b", &[("pod", "b")], "node-1", &["10.244.1.12"], &web(81)),
            pod("y/c", &[("pod", "c")], "node-1", &["10.244.1.13"], &[]),
            pod("x/d", &[("pod", "d")], "node-1", &["10.244.1.14"], &[]),
        ],
        policies: policies.to_vec(),
        nodes: vec![node("node-1", &["192.168.0.1"])],
    }
}

const ALL: [&str; 4] = ["x/a", "x/b", "y/c", "x/d"];

#[test]
fn kernel_agrees_with_the_evaluator_through_deltas() {
    if !privileged("kernel_agrees_with_the_evaluator_through_deltas") {
        return;
    }
    let mut node = Node::new();

    // No policies, x/d not attached as far as the agent knows: the table
    // lets the others talk and keeps x/d's address dark both ways.
    let mut policies = Vec::new();
    node.apply(compile(&view(&policies), &node.inputs(&ALL[..3])));
    node.assert_matches_evaluator(&view(&policies), &ALL[..3], "no policies");
    assert_eq!(
        node.reach(&[("x/d", "x/a", 80), ("x/a", "x/d", 80)]),
        [false, false],
        "an unknown pod address must be unreachable and unable to send"
    );

    // x/d programmed: the delta adds elements only, and it is reachable.
    let delta = node.apply(compile(&view(&policies), &node.inputs(&ALL)));
    assert!(
        delta.lines().all(|l| l.starts_with("add element")),
        "{delta}"
    );
    node.assert_matches_evaluator(&view(&policies), &ALL, "x/d attached");

    let steps = [
        ("x/deny-all", json!({"podSelector": {}})),
        (
            "x/a-from-b",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                                "ports": [{"port": 80}]}]}),
        ),
        (
            "x/b-named-port",
            json!({"podSelector": {"matchLabels": {"pod": "b"}},
                   "ingress": [{"ports": [{"port": "web"}]}]}),
        ),
        (
            "x/a-ipblock",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.1.0/24",
                                                      "except": ["10.244.1.13/32"]}}],
                                "ports": [{"port": 81}]}]}),
        ),
        (
            "y/deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        ),
        (
            "y/egress-named-port",
            json!({"podSelector": {}, "policyTypes": ["Egress"],
                   "egress": [{"ports": [{"port": "web"}]}]}),
        ),
    ];
    for (key, spec) in steps {
        policies.push(policy(key, spec));
        let v = view(&policies);
        let delta = node.apply(compile(&v, &node.inputs(&ALL)));
        assert!(
            !delta.contains("delete table"),
            "{key}: a delta, not a reload"
        );
        node.assert_matches_evaluator(&v, &ALL, key);
    }

    // Back to no policies by deltas: everything open again.
    policies.clear();
    node.apply(compile(&view(&policies), &node.inputs(&ALL)));
    node.assert_matches_evaluator(&view(&policies), &ALL, "policies removed");
}

#[test]
fn a_pod_cannot_send_with_a_foreign_source_address() {
    if !privileged("a_pod_cannot_send_with_a_foreign_source_address") {
        return;
    }
    let mut node = Node::new();
    // x/a sends to x/b from 192.0.2.7 (not its address); the node routes
    // replies for it back to x/a, so only the table can stop the connection.
    let spoofed = "192.0.2.7";
    let a = node.pod("x/a");
    // On loopback, so that it is never picked as the source for other
    // destinations.
    a.ns.ip(&["addr", "add", &format!("{spoofed}/32"), "dev", "lo"])
        .unwrap();
    a.ns.ip(&[
        "route",
        "add",
        "10.244.1.12/32",
        "dev",
        "eth0",
        "src",
        spoofed,
    ])
    .unwrap();
    node.ns
        .ip(&["route", "add", &format!("{spoofed}/32"), "dev", a.host_if])
        .unwrap();
    assert_eq!(
        node.reach(&[("x/a", "x/b", 80)]),
        [true],
        "control: without the table the spoofed connection works"
    );
    node.apply(compile(&view(&[]), &node.inputs(&ALL)));
    assert_eq!(
        node.reach(&[("x/a", "x/b", 80), ("x/a", "y/c", 80)]),
        [false, true]
    );
}
