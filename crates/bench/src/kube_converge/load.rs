//! The memory phase's cluster: thousands of Pods and NetworkPolicies as
//! objects only (no pod runs), spread over Node objects of their own, in
//! the shapes of the policy benchmark's synthesized cluster
//! ([`crate::policy::synth`]): namespace labels `team`/`env`, pod labels
//! `app`/`tier`, named ports `http` and `metrics`, and its five policy
//! shapes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use ipnet::{IpNet, Ipv4Net};
use serde_json::{Value, json};
use weft_lab::cluster::register_node;
use weft_lab::state::NodeRecord;
use weft_lab::store::Store;
use weft_lab::{control_plane, objects};

use super::bulk;
use super::lab::Lab;
use crate::policy::synth::{APPS, policy_json};

/// Third octet of the first load node's pod CIDR (10.244.100.0/24): above
/// what the lab's own nodes get, inside the cluster CIDR so
/// kube-controller-manager records them as taken.
const CIDR_BASE: usize = 100;

/// Host number of the first load node's InternalIP on underlay segment 0
/// (172.30.0.100): on the segment, so host-gw routes to it are valid,
/// below the external client (.250) and above the lab's own nodes.
const IP_BASE: usize = 100;

/// Most load nodes (their addresses must stay below the external client).
pub const MAX_NODES: usize = 100;

/// Documents per file-datastore transaction: the file datastore's bulk
/// path is one transaction for many documents.
const FILE_BATCH: usize = 100;

/// How long kube-controller-manager may take to create the namespaces'
/// `default` ServiceAccounts (without them the API server refuses Pods).
const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// What to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Pods (objects only, Running with an address).
    pub pods: usize,
    /// NetworkPolicies.
    pub policies: usize,
    /// Node objects the pods are spread over (and as many namespaces).
    pub nodes: usize,
    /// Writes in flight against the API server.
    pub in_flight: usize,
}

/// Stores the plan's objects in `lab`'s cluster; returns how long it took.
pub fn load(lab: &Lab, plan: &Plan) -> Result<Duration> {
    let store = &lab.store;
    if plan.nodes == 0 || plan.nodes > MAX_NODES {
        bail!("--load-nodes must be 1 to {MAX_NODES}");
    }
    if plan.pods > plan.nodes * 250 {
        bail!("at most 250 pods per load node (their /24s)");
    }
    let start = Instant::now();
    let namespaces: Vec<Value> = (0..plan.nodes).map(namespace).collect();
    store.apply(namespaces, "load namespaces")?;
    let nodes: Vec<NodeRecord> = (0..plan.nodes).map(node).collect();
    bounded(&nodes, plan.in_flight, |n| {
        register_node(store, n, &[4])?;
        Ok(())
    })?;
    if store.is_kube() {
        wait_service_accounts(store, plan.nodes)?;
    }
    let setup = start.elapsed();
    let pods: Vec<Value> = (0..plan.pods).map(|n| pod(n, plan.nodes)).collect();
    write(lab, &pods, plan.in_flight, "pods")?;
    let with_pods = start.elapsed();
    let policies: Vec<Value> = (0..plan.policies)
        .map(|p| policy_json(p, plan.nodes, None))
        .collect();
    write(lab, &policies, plan.in_flight, "policies")?;
    let took = start.elapsed();
    eprintln!(
        "kube-converge: {}: namespaces and nodes {:.1} s, pods {:.1} s, policies {:.1} s",
        lab.datastore.as_str(),
        setup.as_secs_f64(),
        (with_pods - setup).as_secs_f64(),
        (took - with_pods).as_secs_f64()
    );
    Ok(took)
}

/// Writes `docs`: in batches to the file datastore (its bulk path: one
/// transaction for many documents); `in_flight` requests at a time to the
/// API server ([`bulk`]).
fn write(lab: &Lab, docs: &[Value], in_flight: usize, what: &str) -> Result<()> {
    match &lab.bench.state.control_plane {
        None => {
            for chunk in docs.chunks(FILE_BATCH) {
                lab.store.apply(chunk.to_vec(), &format!("load {what}"))?;
            }
            Ok(())
        }
        Some(cp) => {
            let kubeconfig = control_plane::admin_kubeconfig(&lab.bench.layout);
            bulk::create_all(&cp.netns, &kubeconfig, docs, in_flight)
        }
    }
}

/// Runs `f` on every item, at most `in_flight` at a time, each on a thread
/// of its own; stops handing out items after the first failure, which it
/// returns.
pub fn bounded<T: Sync>(
    items: &[T],
    in_flight: usize,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..in_flight.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = f(item) {
                        // Past the end: the other threads stop too.
                        next.store(items.len(), Ordering::Relaxed);
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Waits until kube-controller-manager has created the `default`
/// ServiceAccount of every load namespace.
fn wait_service_accounts(store: &Store, namespaces: usize) -> Result<()> {
    let deadline = Instant::now() + SERVICE_ACCOUNT_TIMEOUT;
    loop {
        let have = store
            .list("ServiceAccount")?
            .iter()
            .filter(|sa| {
                sa["metadata"]["name"] == "default"
                    && sa["metadata"]["namespace"]
                        .as_str()
                        .is_some_and(|ns| ns.starts_with("ns-"))
            })
            .count();
        if have >= namespaces {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "only {have} of {namespaces} load namespaces got their default ServiceAccount \
                 within {SERVICE_ACCOUNT_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Namespace `ns-j`, labelled as the policy benchmark's.
fn namespace(j: usize) -> Value {
    let env = if j % 2 == 0 { "prod" } else { "dev" };
    let labels = BTreeMap::from([
        ("team".to_owned(), format!("team-{}", j % 10)),
        ("env".to_owned(), env.to_owned()),
    ]);
    objects::namespace(&format!("ns-{j}"), &labels)
}

/// Load node `j`: `load-j`, pod CIDR 10.244.(100+j).0/24, InternalIP
/// 172.30.0.(100+j). No namespace or agent: an object only.
fn node(j: usize) -> NodeRecord {
    let third = u8::try_from(CIDR_BASE + j).expect("MAX_NODES keeps it below 256");
    let host = u8::try_from(IP_BASE + j).expect("MAX_NODES keeps it below 256");
    let cidr = Ipv4Net::new(Ipv4Addr::new(10, 244, third, 0), 24).expect("valid prefix");
    let ip = Ipv4Net::new(Ipv4Addr::new(172, 30, 0, host), 24).expect("valid prefix");
    NodeRecord {
        name: format!("load-{j}"),
        netns: String::new(),
        segment: 0,
        addresses: vec![IpNet::V4(ip)],
        pod_cidrs: vec![IpNet::V4(cidr)],
        weftd: None,
        health_addr: None,
    }
}

/// Pod `n` as the policy benchmark places and labels it: on node
/// `n % nodes`, its `i = n / nodes`-th pod there, in namespace
/// `ns-(i % nodes)`, address host `i + 2` of the node's /24; Running and
/// Ready.
fn pod(n: usize, nodes: usize) -> Value {
    let (j, i) = (n % nodes, n / nodes);
    let labels = BTreeMap::from([
        ("app".to_owned(), format!("app-{}", (n * 7 + i) % APPS)),
        ("tier".to_owned(), format!("t{}", n % 5)),
    ]);
    let node = node(j);
    let mut doc = objects::pod(
        &format!("ns-{}", i % nodes),
        &format!("pod-{n}"),
        &node.name,
        &labels,
        &[],
    );
    doc["spec"]["containers"][0]["ports"] = json!([
        {"name": "http", "containerPort": 8080 + (n % 3), "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]);
    let ip = match node.pod_cidrs[0] {
        IpNet::V4(c) => c.hosts().nth(i + 1).map(IpAddr::V4),
        IpNet::V6(_) => None,
    };
    let host_ip = node.addresses[0].addr();
    objects::set_pod_running(&mut doc, &ip.into_iter().collect::<Vec<_>>(), Some(host_ip));
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_spread_over_nodes_and_namespaces_with_addresses_of_their_node() {
        let p = pod(123, 50);
        assert_eq!(p["metadata"]["name"], "pod-123");
        assert_eq!(p["spec"]["nodeName"], "load-23");
        assert_eq!(p["metadata"]["namespace"], "ns-2");
        assert_eq!(p["status"]["podIP"], "10.244.123.4");
        assert_eq!(p["status"]["hostIP"], "172.30.0.123");
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["name"], "http");
        // 5,000 pods over 50 nodes: 100 each, all addresses distinct.
        let ips: std::collections::BTreeSet<String> = (0..5000)
            .map(|n| pod(n, 50)["status"]["podIP"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ips.len(), 5000);
    }

    #[test]
    fn bounded_runs_everything_once_and_reports_a_failure() {
        let seen = Mutex::new(Vec::new());
        bounded(&(0..100).collect::<Vec<_>>(), 16, |i| {
            seen.lock().unwrap().push(*i);
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        let err = bounded(&[1, 2, 3], 2, |i| match i {
            2 => bail!("item {i} failed"),
            _ => Ok(()),
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "item 2 failed");
    }
}
