//! The Service cases of issue 5 beyond plain load-balancing: the internal
//! traffic policy, terminating-but-serving endpoints, SCTP programming,
//! and external and load-balancer addresses. They run on the suite's lab
//! (pods web-a on node1, web-b and web-c on node2, clients cli1 and cli2)
//! before any pod is removed.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use weft_lab::store::Store;
use weft_lab::{LabState, Layout, netns};
use weft_model::Protocol;

use super::{apply, ask, assert_rejected_fast, attempt, svc, sync, v4};

/// Addresses no interface holds, only the proxy's rules (TEST-NET-1 and
/// TEST-NET-2): traffic to them is answered only if it is DNATed.
const EXTERNAL_IP: &str = "192.0.2.80";
const LB_INGRESS_IP: &str = "198.51.100.80";

/// The Services these cases add. `term` has no selector: its slice is
/// written by the test (see [`terminating`]).
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: itp, namespace: x}
spec:
  selector: {app: web}
  internalTrafficPolicy: Local
  ports: [{port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Service
metadata: {name: itp-b, namespace: x}
spec:
  selector: {name: web-b}
  internalTrafficPolicy: Local
  ports: [{port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Service
metadata: {name: term, namespace: x}
spec:
  ports: [{name: who, port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: x}
spec:
  selector: {app: web}
  ports:
  - {name: tcp, port: 80, targetPort: 9376}
  - {name: udp, port: 53, protocol: UDP, targetPort: 9376}
  - {name: sctp, port: 9376, protocol: SCTP, targetPort: 9376}
---
apiVersion: v1
kind: Service
metadata: {name: ext-ip, namespace: x}
spec:
  selector: {app: web}
  externalIPs: [192.0.2.80]
  ports: [{port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: x}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 9376}]
"#;

/// Connections per client in the distribution checks.
const CONNECTIONS: usize = 50;

/// How long a dropped connection attempt is given: kube-proxy drops
/// (no reset), so the client's connect times out.
const DROP_WAIT: Duration = Duration::from_millis(700);

/// Applies the Services, a load-balancer ingress address in `lb`'s status
/// (what a cloud controller would write).
pub fn setup(layout: &Layout) {
    apply(layout, SERVICES);
    let store = Store::open(layout).unwrap();
    let status = json!({"loadBalancer": {"ingress": [{"ip": LB_INGRESS_IP}]}});
    store
        .set_status("Service", Some("x"), "lb", &status)
        .unwrap_or_else(|e| panic!("write lb's load-balancer status: {e}"));
    sync(layout);
}

/// The pods each of `n` connections from `from` to `to` reached.
fn reached(layout: &Layout, from: &str, to: SocketAddr, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| ask(layout, from, to, Protocol::Tcp).pod)
        .collect()
}

/// `internalTrafficPolicy: Local`: a client on a node with local endpoints
/// reaches only those.
pub fn internal_traffic_policy_local(layout: &Layout) {
    let to = SocketAddr::new(v4(&svc(layout, "itp").cluster_ips), 80);
    let on_node1 = reached(layout, "x/cli1", to, CONNECTIONS);
    assert_eq!(on_node1, BTreeSet::from(["x/web-a".into()]), "from node1");
    let on_node2 = reached(layout, "x/cli2", to, CONNECTIONS);
    let node2_pods = BTreeSet::from(["x/web-b".to_string(), "x/web-c".to_string()]);
    assert_eq!(on_node2, node2_pods, "from node2 (both local endpoints)");
    // The Service whose only endpoint is on node2 works from node2.
    let to = SocketAddr::new(v4(&svc(layout, "itp-b").cluster_ips), 80);
    assert_eq!(reached(layout, "x/cli2", to, 5).len(), 1);
}

/// `internalTrafficPolicy: Local` from a node without a local endpoint
/// while the Service has endpoints elsewhere: kube-proxy drops (iptables
/// `"… has no local endpoints" -j DROP`; nftables `no-endpoint-services`
/// → `drop`), unlike a Service with no endpoint at all, which it rejects.
/// The connection attempt must neither succeed nor be refused.
pub fn internal_traffic_policy_local_drops_elsewhere(layout: &Layout) {
    let to = SocketAddr::new(v4(&svc(layout, "itp-b").cluster_ips), 80);
    let (got, took) = attempt(layout, "x/cli1", to, DROP_WAIT);
    let err = match got {
        Ok(answer) => panic!("node1 has no local endpoint of itp-b, yet {answer:?}"),
        Err(e) => e,
    };
    assert!(
        !err.contains("refused") && took >= DROP_WAIT,
        "kube-proxy drops iTP-Local traffic without a local endpoint (the Service has \
         endpoints elsewhere); weft answered after {took:?}: {err}"
    );
}

/// Conditions of an endpoint in a hand-written slice.
type Conditions = (bool, bool, bool);
const READY: Conditions = (true, true, false);
const SERVING_TERMINATING: Conditions = (false, true, true);
const TERMINATING: Conditions = (false, false, true);
/// A pod (`namespace/name`) in a hand-written slice, with its conditions.
type Endpoint = (&'static str, Conditions);

/// Writes the slice of the selector-less Service `term`: `endpoints` as
/// (pod, (ready, serving, terminating)). No controller owns it (no
/// managed-by label, no selector), so on both datastores it stays as
/// written: the same conditions the EndpointSlice controller writes for a
/// pod with a deletionTimestamp (ready false, serving from its Ready
/// condition, terminating true).
fn write_term_slice(layout: &Layout, endpoints: &[Endpoint]) {
    let state = LabState::require(layout).unwrap();
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(key, (ready, serving, terminating))| {
            let pod = state.pod(key).unwrap();
            let (namespace, name) = key.split_once('/').unwrap();
            json!({
                "addresses": [v4(&pod.ips).to_string()],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "nodeName": pod.node,
                "targetRef": {"kind": "Pod", "namespace": namespace, "name": name},
            })
        })
        .collect();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "term-manual",
            "namespace": "x",
            "labels": {weft_model::service::SERVICE_NAME_LABEL: "term"},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "who", "protocol": "TCP", "port": 9376}],
    });
    apply(layout, &slice.to_string());
}

/// Terminating-but-serving endpoints get traffic only when no ready
/// endpoint is left; terminating endpoints that no longer serve never.
pub fn terminating(layout: &Layout) {
    let to = SocketAddr::new(v4(&svc(layout, "term").cluster_ips), 80);
    // (the slice's endpoints, the one pod that must get every connection;
    // none: rejected at once, as a Service without endpoints).
    let phases: [(&[Endpoint], Option<&str>); 3] = [
        (
            &[("x/web-a", READY), ("x/web-b", SERVING_TERMINATING)],
            Some("x/web-a"),
        ),
        (
            &[("x/web-a", TERMINATING), ("x/web-b", SERVING_TERMINATING)],
            Some("x/web-b"),
        ),
        (&[("x/web-a", TERMINATING), ("x/web-b", TERMINATING)], None),
    ];
    for (endpoints, only) in phases {
        write_term_slice(layout, endpoints);
        sync(layout);
        match only {
            Some(pod) => {
                let hit = reached(layout, "x/cli1", to, CONNECTIONS);
                assert_eq!(hit, BTreeSet::from([pod.into()]), "{endpoints:?}");
            }
            None => assert_rejected_fast(layout, "x/cli1", to),
        }
    }
}

/// SCTP: this kernel has no SCTP sockets, so no SCTP connection can be
/// made; what is checked is that the SCTP port is programmed in each
/// node's proxy table (a `service_ips4` element for the cluster IP, sctp
/// and the port, sending to a chain with rules), and that the TCP and UDP
/// ports of the same Service still answer.
pub fn sctp_programmed(layout: &Layout) {
    let multi = svc(layout, "multi");
    let ip = v4(&multi.cluster_ips);
    let state = LabState::require(layout).unwrap();
    for node in &state.nodes {
        let table = proxy_table(&node.netns);
        let target = map_target(&table, "service_ips4", &ip, "sctp", 9376)
            .unwrap_or_else(|| panic!("{}: no sctp element for {ip}:9376: {table}", node.name));
        let rules = rules_of(&table, &target);
        assert!(rules > 0, "{}: chain {target} has no rules", node.name);
    }
    let web: BTreeSet<&str> = ["x/web-a", "x/web-b", "x/web-c"].into();
    let tcp = ask(layout, "x/cli1", SocketAddr::new(ip, 80), Protocol::Tcp);
    assert!(web.contains(tcp.pod.as_str()), "{tcp:?}");
    let udp = ask(layout, "x/cli2", SocketAddr::new(ip, 53), Protocol::Udp);
    assert!(web.contains(udp.pod.as_str()), "{udp:?}");
}

/// `nft -j list table inet weft-proxy` inside `netns`, decoded.
fn proxy_table(netns_name: &str) -> Value {
    let out = netns::run(
        Command::new("ip").args([
            "netns",
            "exec",
            netns_name,
            "nft",
            "-j",
            "list",
            "table",
            "inet",
            "weft-proxy",
        ]),
        &format!("list table inet weft-proxy in {netns_name}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The chain that element `ip . proto . port` of map `map` goes to.
fn map_target(table: &Value, map: &str, ip: &IpAddr, proto: &str, port: u16) -> Option<String> {
    let objects = table["nftables"].as_array()?;
    let map = objects.iter().find_map(|o| {
        let m = &o["map"];
        (m["name"].as_str() == Some(map)).then_some(m)
    })?;
    map["elem"].as_array()?.iter().find_map(|elem| {
        let key = elem[0]["concat"].as_array()?;
        let matches = key.len() == 3
            && key[0].as_str() == Some(ip.to_string().as_str())
            && key[1].as_str() == Some(proto)
            && key[2].as_u64() == Some(u64::from(port));
        let verdict = &elem[1];
        let target = verdict["goto"]["target"]
            .as_str()
            .or_else(|| verdict["jump"]["target"].as_str())?;
        matches.then(|| target.to_owned())
    })
}

/// How many rules chain `chain` of the listed table has.
fn rules_of(table: &Value, chain: &str) -> usize {
    table["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["rule"]["chain"].as_str() == Some(chain))
        .count()
}

/// `externalIPs` and the load-balancer ingress address in the status are
/// reachable from pods on both nodes, reaching the Service's endpoints.
pub fn external_and_lb_ips(layout: &Layout) {
    let web: BTreeSet<&str> = ["x/web-a", "x/web-b", "x/web-c"].into();
    for ip in [EXTERNAL_IP, LB_INGRESS_IP] {
        let to = SocketAddr::new(ip.parse().unwrap(), 80);
        for client in ["x/cli1", "x/cli2"] {
            let answer = ask(layout, client, to, Protocol::Tcp);
            assert!(
                web.contains(answer.pod.as_str()),
                "{client} -> {to}: {answer:?}"
            );
        }
    }
}
