//! The convergence events: a Pod's status update and a NetworkPolicy's
//! creation, each timed from the write's return to the moment the other
//! node's `inet weft-policy` table shows its effect.
//!
//! The scene: a real server pod (`bench/server`, label `app=server`) on
//! node2, and policy `bench/allow-clients` selecting it with ingress from
//! pods labelled `role=client`. The agent on node2 then keeps every client
//! pod's address in its table, and every policy selecting the server adds
//! that policy's port.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use weft_lab::kubelet::{self, PodSpec};
use weft_lab::objects;
use weft_lab::store::Store;
use weft_model::Protocol;
use weft_policy::nft::TABLE;

use super::lab::Lab;
use super::monitor::NftMonitor;

/// The Kubernetes namespace of the scene.
pub const NAMESPACE: &str = "bench";

/// The first port of the policy events (`p-i` opens `PORT_BASE + i`).
pub const PORT_BASE: u16 = 10000;

/// The first host number of the client addresses in node1's pod CIDR
/// (node1 runs no real pod, so none of them is taken).
const HOST_BASE: u32 = 10;

/// Most events of one kind: the client addresses must fit node1's /24.
pub const MAX_EVENTS: usize = 200;

/// How long one event may take before it counts as missed.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause before each timed write, so the agents have finished the pass of
/// the previous step (the Pod's creation, the previous event) and the
/// sample measures one change on an idle agent.
const SETTLE: Duration = Duration::from_millis(200);

/// The samples of one kind of event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// Write returned → rule on the other node, per event seen.
    pub latencies: Vec<Duration>,
    /// Events whose effect was not seen within the timeout.
    pub missed: usize,
    /// Events whose effect was read before the write returned (counted as
    /// zero: the watch delivered it before the write's response).
    pub early: usize,
}

impl Samples {
    fn record(&mut self, t0: Instant, t1: Option<Instant>) {
        match t1 {
            Some(t1) => {
                self.early += usize::from(t1 < t0);
                self.latencies.push(t1.saturating_duration_since(t0));
            }
            None => self.missed += 1,
        }
    }
}

/// Starts the server pod on node2 and the policy admitting clients, and
/// waits until node2's agent enforces it.
pub fn scene(lab: &mut Lab) -> Result<()> {
    let spec = PodSpec {
        namespace: NAMESPACE.into(),
        name: "server".into(),
        node: Some(lab.node(1)?.name.clone()),
        labels: BTreeMap::from([("app".into(), "server".into())]),
        ports: vec![(Protocol::Tcp, 80)],
    };
    let store = lab.store.clone();
    kubelet::add_pod(&lab.bench.layout, &mut lab.bench.state, &store, &spec)
        .context("start the server pod bench/server on node2")?;
    lab.store.apply(
        vec![policy("allow-clients", 80)],
        "policy bench/allow-clients",
    )?;
    lab.sync()
        .context("wait for the agents to apply the scene")?;
    Ok(())
}

/// Event (a), `count` times: Pod `client-i` (on node1, `role=client`, an
/// object only) is created, then its status gets a fresh address of
/// node1's pod CIDR; from that status write's return until node2's table
/// holds the address.
pub fn pod_status_events(lab: &Lab, monitor: &NftMonitor, count: usize) -> Result<Samples> {
    let node1 = lab.node(0)?;
    let cidr = node1
        .pod_cidrs
        .iter()
        .find_map(|c| match c {
            ipnet::IpNet::V4(v4) => Some(*v4),
            ipnet::IpNet::V6(_) => None,
        })
        .context("node1 has no IPv4 pod CIDR")?;
    let host_ip = node1.addresses.first().map(|a| a.addr());
    let labels = BTreeMap::from([("role".to_string(), "client".to_string())]);
    let mut samples = Samples::default();
    for i in 0..count {
        let name = client_name(i);
        let ip = IpAddr::V4(
            cidr.hosts()
                .nth((HOST_BASE as usize) + i)
                .with_context(|| format!("node1's pod CIDR {cidr} has no host {i}"))?,
        );
        let pod = objects::pod(NAMESPACE, &name, &node1.name, &labels, &[]);
        lab.store
            .apply(vec![pod], &format!("Pod {NAMESPACE}/{name}"))?;
        std::thread::sleep(SETTLE);
        monitor.drain();
        lab.store.update("Pod", Some(NAMESPACE), &name, |p| {
            objects::set_pod_running(p, &[ip], host_ip)
        })?;
        let t0 = Instant::now();
        let t1 = monitor.wait_for(TABLE, &ip.to_string(), t0 + EVENT_TIMEOUT)?;
        samples.record(t0, t1);
        lab.check_interrupted()?;
    }
    Ok(samples)
}

/// Event (b), `count` times: policy `p-i` selecting the server with port
/// `PORT_BASE + i` is created; from the create's return until node2's
/// table shows the port.
pub fn policy_events(lab: &Lab, monitor: &NftMonitor, count: usize) -> Result<Samples> {
    let mut samples = Samples::default();
    for i in 0..count {
        let port = event_port(i)?;
        std::thread::sleep(SETTLE);
        monitor.drain();
        let name = policy_name(i);
        lab.store.apply(
            vec![policy(&name, port)],
            &format!("policy {NAMESPACE}/{name}"),
        )?;
        let t0 = Instant::now();
        let t1 = monitor.wait_for(TABLE, &port.to_string(), t0 + EVENT_TIMEOUT)?;
        samples.record(t0, t1);
        lab.check_interrupted()?;
    }
    Ok(samples)
}

/// Deletes what the events created (`count` client Pods and policies), so
/// the memory phase starts from the scene alone.
pub fn remove_events(store: &Store, count: usize, in_flight: usize) -> Result<()> {
    let objects: Vec<(&str, String)> = (0..count)
        .flat_map(|i| [("Pod", client_name(i)), ("NetworkPolicy", policy_name(i))])
        .collect();
    super::load::bounded(&objects, in_flight, |(kind, name)| {
        store.delete(kind, Some(NAMESPACE), name)?;
        Ok(())
    })
}

fn client_name(i: usize) -> String {
    format!("client-{i}")
}

fn policy_name(i: usize) -> String {
    format!("p-{i}")
}

fn event_port(i: usize) -> Result<u16> {
    match u16::try_from(i).ok().and_then(|i| PORT_BASE.checked_add(i)) {
        Some(p) => Ok(p),
        None => bail!("event {i} has no port above {PORT_BASE}"),
    }
}

/// A policy in the scene's namespace selecting the server, with ingress on
/// `port` from the client pods.
fn policy(name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "podSelector": {"matchLabels": {"app": "server"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                "ports": [{"port": port, "protocol": "TCP"}]
            }]
        }
    })
}
