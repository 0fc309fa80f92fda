//! The mirror against a real kube-apiserver (with etcd) on loopback inside
//! a fresh `weft` network namespace: the snapshot follows creates, updates
//! and deletes, its digest equals `cluster_digest`, node annotations are
//! published, and an API server killed with SIGKILL and restarted is caught
//! up with. A mirror in a node namespace whose address changes (the old one
//! removed, as when a node moves to a new underlay address) keeps following
//! the cluster: its watch connections from the vanished address die
//! silently, and must be noticed within seconds, not at the 290 s watch
//! timeout.

mod fixture;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as networking;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use weft_kube::{KubeSnapshot, Mirror, client, cluster_digest};

use fixture::{ApiServer, Node, kube_bin};

/// How long the mirror may take to converge after a change.
const CONVERGE: Duration = Duration::from_secs(30);

/// How long a mirror whose source address vanished may take to see a
/// change: the connection's death is noticed after 11 s of silence, then
/// the watcher's first backoff (under 1 s) and a new watch.
const AFTER_ADDRESS_LOSS: Duration = Duration::from_secs(25);

struct Test {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client,
    mirror: Mirror,
}

impl Test {
    /// Waits until the mirror's snapshot has the digest of a fresh LIST and
    /// satisfies `want`.
    fn converge(
        &mut self,
        what: &str,
        want: impl Fn(&KubeSnapshot) -> bool,
    ) -> Result<KubeSnapshot> {
        self.converge_within(what, CONVERGE, want)
    }

    /// [`Test::converge`] with a deadline of `within`.
    fn converge_within(
        &mut self,
        what: &str,
        within: Duration,
        want: impl Fn(&KubeSnapshot) -> bool,
    ) -> Result<KubeSnapshot> {
        let deadline = Instant::now() + within;
        loop {
            self.mirror.wait(Duration::from_millis(500));
            if let Ok(snap) = self.mirror.snapshot() {
                let cluster = self.rt.block_on(cluster_digest(&self.client));
                if let Ok(cluster) = cluster {
                    if cluster == snap.digest && want(&snap) {
                        return Ok(snap);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("the mirror did not converge within {within:?} on: {what}");
            }
        }
    }
}

fn create<K>(rt: &tokio::runtime::Runtime, api: &Api<K>, v: serde_json::Value) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v)?;
    rt.block_on(api.create(&PostParams::default(), &obj))
        .context("create")
}

#[test]
fn mirror_follows_a_real_apiserver() {
    let Some(bin) = kube_bin("mirror_follows_a_real_apiserver") else {
        return;
    };
    let mut server = ApiServer::start(&bin).expect("start etcd and kube-apiserver");
    let kubeconfig = server.kubeconfig();
    // Sockets belong to the namespace of the thread that makes them; the
    // mirror's runtime threads are spawned from this one and inherit it.
    let ns = server.ns().file().expect("open the namespace");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            scenario(&mut server, &kubeconfig)
        })
        .join()
        .expect("scenario thread panicked")
    })
    .expect("scenario");
}

fn scenario(server: &mut ApiServer, kubeconfig: &std::path::Path) -> Result<()> {
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    );
    let client = rt.block_on(client(Some(kubeconfig)))?;
    let mirror = Mirror::start(Some(kubeconfig))?;
    let mut t = Test {
        rt: Arc::clone(&rt),
        client,
        mirror,
    };
    let rt = &*rt;

    // Initial sync: the built-in namespaces and the kubernetes Service
    // (which the API server's bootstrap controller creates a moment after
    // it starts serving: a busy machine can list before it exists).
    t.converge("initial list", |s| {
        s.snapshot.namespaces.iter().any(|n| n.name == "default")
            && s.snapshot.services.iter().any(|s| s.name == "kubernetes")
    })?;

    // Create: a Node with pod CIDRs and addresses, a Pod on it, a policy.
    let nodes: Api<core::Node> = Api::all(t.client.clone());
    create(
        rt,
        &nodes,
        json!({
            "metadata": {"name": "n1", "annotations": {"other.example/keep": "yes"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
        }),
    )?;
    rt.block_on(nodes.patch_status(
        "n1",
        &PatchParams::default(),
        &Patch::Merge(json!({
            "status": {"addresses": [{"type": "InternalIP", "address": "172.30.0.11"}]}
        })),
    ))?;
    let pods: Api<core::Pod> = Api::namespaced(t.client.clone(), "default");
    create(
        rt,
        &pods,
        json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "none",
                     "ports": [{"name": "http", "containerPort": 8080}]}]}
        }),
    )?;
    rt.block_on(pods.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({
            "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}
        })),
    ))?;
    let policies: Api<networking::NetworkPolicy> = Api::namespaced(t.client.clone(), "default");
    create(
        rt,
        &policies,
        json!({
            "metadata": {"name": "deny"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}
        }),
    )?;
    let snap = t.converge("create", |s| {
        let s = &s.snapshot;
        s.nodes
            .iter()
            .any(|n| n.name == "n1" && !n.pod_cidrs.is_empty() && !n.addresses.is_empty())
            && s.pods
                .iter()
                .any(|p| p.name == "web" && p.ready && !p.ips.is_empty() && p.ports.len() == 1)
            && s.policies.iter().any(|p| p.name == "deny")
    })?;
    assert!(
        snap.snapshot.rejected.is_empty(),
        "{:?}",
        snap.snapshot.rejected
    );

    // Update: a label.
    rt.block_on(pods.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"labels": {"app": "web", "rev": "2"}}
        })),
    ))?;
    t.converge("update", |s| {
        s.snapshot
            .pods
            .iter()
            .any(|p| p.labels.get("rev") == Some("2"))
    })?;

    // Delete.
    rt.block_on(policies.delete("deny", &DeleteParams::default()))?;
    t.converge("delete", |s| s.snapshot.policies.is_empty())?;

    // Publish: only weft's annotations change; the others stay.
    let mine = BTreeMap::from([(
        "weft.dev/vtep-mac".to_owned(),
        "02:00:00:00:00:01".to_owned(),
    )]);
    t.mirror.publish_node_annotations("n1", &mine)?;
    t.converge("annotations", |s| {
        s.snapshot
            .nodes
            .iter()
            .any(|n| n.annotations.contains_key("weft.dev/vtep-mac"))
    })?;
    let n1 = rt.block_on(nodes.get("n1"))?;
    let annotations = n1.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("other.example/keep").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        annotations.get("weft.dev/vtep-mac").map(String::as_str),
        Some("02:00:00:00:00:01")
    );

    // API server loss: the stores keep their content.
    let before = t.mirror.snapshot()?;
    server.kill_apiserver();
    std::thread::sleep(Duration::from_secs(2));
    let during = t.mirror.snapshot()?;
    assert_eq!(
        during.digest, before.digest,
        "a lost API server changes nothing"
    );
    assert_eq!(during.snapshot.pods.len(), before.snapshot.pods.len());
    assert!(
        t.mirror.publish_node_annotations("n1", &mine).is_err(),
        "writes fail while it is away"
    );

    // Back: the watchers reconnect and catch up with what changed since.
    server.start_apiserver()?;
    create(
        rt,
        &pods,
        json!({
            "metadata": {"name": "after", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "none"}]}
        }),
    )?;
    t.converge("after restart", |s| {
        s.snapshot.pods.iter().any(|p| p.name == "after")
    })?;
    Ok(())
}

#[test]
fn mirror_follows_after_its_source_address_vanishes() {
    let Some(bin) = kube_bin("mirror_follows_after_its_source_address_vanishes") else {
        return;
    };
    let server = ApiServer::start(&bin).expect("start etcd and kube-apiserver");
    let node = server
        .node()
        .expect("a node namespace towards the API server");
    // The writes go over loopback in the API server's namespace, which the
    // node's move does not touch; the mirror lives in the node namespace.
    let kubeconfig = server.kubeconfig();
    server
        .ns()
        .run(|| address_change(&node, &kubeconfig))
        .expect("enter the API server's namespace")
        .expect("scenario");
}

fn address_change(node: &Node, kubeconfig: &std::path::Path) -> Result<()> {
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    );
    let client = rt.block_on(client(Some(kubeconfig)))?;
    // The mirror's runtime threads are spawned from a thread in the node
    // namespace and inherit it: its connections leave from Node::ADDR.
    let mirror = node.ns.run(|| Mirror::start(Some(&node.kubeconfig)))??;
    let mut t = Test {
        rt: Arc::clone(&rt),
        client,
        mirror,
    };
    t.converge("initial list", |s| {
        s.snapshot.namespaces.iter().any(|n| n.name == "default")
    })?;

    // The node moves: a new address, then the old one removed. The
    // watches' connections still name the old one; the API server's
    // answers to it go nowhere, and nothing tells the client.
    let (iface, old) = (Node::IFACE, format!("{}/24", Node::ADDR));
    node.ns
        .ip(&["addr", "add", "10.250.0.3/24", "dev", iface, "nodad"])?;
    node.ns.ip(&["addr", "del", &old, "dev", iface])?;
    let moved = Instant::now();

    let nodes: Api<core::Node> = Api::all(t.client.clone());
    create(
        &rt,
        &nodes,
        json!({"metadata": {"name": "after-move"}, "spec": {"podCIDRs": ["10.244.9.0/24"]}}),
    )?;
    t.converge_within("a Node created after the move", AFTER_ADDRESS_LOSS, |s| {
        s.snapshot.nodes.iter().any(|n| n.name == "after-move")
    })
    .with_context(|| {
        format!(
            "{:?} after the mirror's source address was removed",
            moved.elapsed()
        )
    })?;
    eprintln!(
        "mirror caught up {:?} after its source address vanished",
        moved.elapsed()
    );
    Ok(())
}
