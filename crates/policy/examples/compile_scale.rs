//! Scale check of the compiler (not a test; prints figures as JSON):
//! 10,000 policies over 10,000 pods in 100 namespaces on 100 nodes, one
//! node's share (100 local pods) compiled, loaded with `nft -f` inside a
//! fresh `weft…` namespace (root only), then one policy changed and the
//! delta loaded.
//!
//! `cargo run --release -p weft-policy --example compile_scale [pods]`

use std::io::Write;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_model::{ContainerPort, Labels, Namespace, NetworkPolicy, Pod, PodPhase, Protocol};
use weft_policy::nft::{render_delta, render_full};
use weft_policy::{LocalPod, NodeInputs, PolicyView, compile};
use weft_testkit::{NetNs, privileged};

const NAMESPACES: usize = 100;
const NODES: usize = 100;
const APPS: usize = 50;

fn main() -> anyhow::Result<()> {
    let pods: usize = std::env::args().nth(1).map_or(Ok(10_000), |a| a.parse())?;
    let policies = pods;
    let mut view = synthesize(pods, policies);
    let node = local_share(&view, "node-0");

    let started = Instant::now();
    let ruleset = compile(&view, &node);
    let compile_time = started.elapsed();
    let full = render_full(&ruleset);
    let stats = ruleset.stats();

    // One policy change: a policy of namespace ns-0 (where node-0 has
    // pods) gets another port.
    let changed = view
        .policies
        .iter()
        .position(|p| p.namespace == "ns-0")
        .expect("a policy in ns-0");
    view.policies[changed] = policy(0, changed, 8443);
    let started = Instant::now();
    let next = compile(&view, &node);
    let recompile_time = started.elapsed();
    let delta = render_delta(&ruleset, &next).unwrap_or_default();

    let (full_load, delta_load) = if privileged("compile_scale: nft loads") {
        let ns = NetNs::new("scale")?;
        let full_load = nft(&ns, &full)?;
        let delta_load = nft(&ns, &delta)?;
        (Some(full_load), Some(delta_load))
    } else {
        (None, None)
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "pods": pods, "policies": policies, "local_pods": node.pods.len(),
            "compile_ms": ms(compile_time),
            "recompile_ms": ms(recompile_time),
            "sets": stats.sets, "maps": stats.maps, "elements": stats.elements,
            "chains": stats.chains, "rules": stats.rules,
            "full_text_bytes": full.len(),
            "full_load_ms": full_load.map(ms),
            "delta_text_bytes": delta.len(),
            "delta_commands": delta.lines().count(),
            "delta_load_ms": delta_load.map(ms),
        }))?
    );
    Ok(())
}

/// Pods spread round-robin over nodes and namespaces, labelled with one of
/// 50 apps, `tier=t<n mod 5>`, each with a named port `http`;
/// 100 policies per namespace selecting an app, allowing ingress from
/// another app (and a namespace by label), some on the named port, some
/// with an egress ipBlock.
fn synthesize(pods: usize, policies: usize) -> PolicyView {
    let namespaces = (0..NAMESPACES)
        .map(|i| Namespace {
            name: format!("ns-{i}"),
            labels: Labels::from([("team".to_owned(), format!("team-{}", i % 10))]),
        })
        .collect();
    let pods = (0..pods)
        .map(|n| {
            let node = n % NODES;
            let index = n / NODES;
            let ip: IpAddr = format!("10.{node}.{}.{}", index / 250, index % 250 + 1)
                .parse()
                .unwrap();
            Pod {
                namespace: format!("ns-{}", (n / NODES) % NAMESPACES),
                name: format!("pod-{n}"),
                labels: Labels::from([
                    // Mixed with the namespace index so that a node's pods
                    // (every NODES-th) do not all share one app.
                    (
                        "app".to_owned(),
                        format!("app-{}", (n * 7 + n / NODES) % APPS),
                    ),
                    ("tier".to_owned(), format!("t{}", n % 5)),
                ]),
                node_name: Some(format!("node-{node}")),
                ips: vec![ip],
                ports: vec![ContainerPort {
                    name: Some("http".to_owned()),
                    port: 8080 + (n % 3) as u16,
                    protocol: Protocol::Tcp,
                }],
                host_network: false,
                phase: PodPhase::Running,
                ready: true,
            }
        })
        .collect();
    let policies = (0..policies)
        .map(|p| policy(p % NAMESPACES, p, 80))
        .collect();
    PolicyView {
        namespaces,
        pods,
        policies,
        nodes: Vec::new(),
    }
}

/// Policy `p` of `namespace`; `q`, its index inside the namespace, picks
/// the app it selects, so each app of a namespace is selected by
/// policies / (namespaces x apps) policies (2 at the default size).
fn policy(namespace: usize, p: usize, port: u16) -> NetworkPolicy {
    let q = p / NAMESPACES;
    let mut spec = json!({
        "podSelector": {"matchLabels": {"app": format!("app-{}", q % APPS)}},
        "ingress": [{
            "from": [
                {"podSelector": {"matchLabels": {"app": format!("app-{}", (q + 1) % APPS)}}},
                {"namespaceSelector": {"matchLabels": {"team": format!("team-{}", p % 10)}},
                 "podSelector": {"matchLabels": {"tier": format!("t{}", p % 5)}}}
            ],
            "ports": [{"port": port}, {"port": "http"}]
        }]
    });
    if p % 4 == 0 {
        spec["policyTypes"] = json!(["Ingress", "Egress"]);
        spec["egress"] = json!([{
            "to": [{"ipBlock": {"cidr": format!("172.{}.0.0/16", 16 + p % 16),
                                "except": [format!("172.{}.{}.0/24", 16 + p % 16, p % 256)]}}]
        }, {
            "to": [{"podSelector": {"matchLabels": {"app": format!("app-{}", (q + 2) % APPS)}}}],
            "ports": [{"port": "http"}]
        }]);
    }
    NetworkPolicy::from_value(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("pol-{p}"), "namespace": format!("ns-{namespace}")},
        "spec": spec,
    }))
    .expect("valid synthesized policy")
}

/// The node's pods as the agent would report them.
fn local_share(view: &PolicyView, node: &str) -> NodeInputs {
    let pods: Vec<LocalPod> = view
        .pods
        .iter()
        .filter(|p| p.node_name.as_deref() == Some(node))
        .enumerate()
        .map(|(i, p)| LocalPod {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            ips: p.ips.clone(),
            host_if: format!("weft{i:011x}"),
        })
        .collect();
    NodeInputs {
        pod_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
        pods,
    }
}

/// Loads `script` with `nft -f -` inside `ns`; returns the wall time.
fn nft(ns: &NetNs, script: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(elapsed)
}
