//! The mirror against a real kube-apiserver (with etcd) on loopback inside
//! a fresh `weft` network namespace: the snapshot follows creates, updates
//! and deletes, its digest equals `cluster_digest`, node annotations are
//! published, and an API server killed with SIGKILL and restarted is caught
//! up with.

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

use fixture::{ApiServer, kube_bin};

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
        let deadline = Instant::now() + Duration::from_secs(30);
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
                bail!("the mirror did not converge on: {what}");
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

    // Initial sync: the built-in namespaces and the kubernetes Service.
    let snap = t.converge("initial list", |s| {
        s.snapshot.namespaces.iter().any(|n| n.name == "default")
    })?;
    assert!(
        snap.snapshot
            .services
            .iter()
            .any(|s| s.name == "kubernetes")
    );

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
            .any(|p| p.labels.get("rev").map(String::as_str) == Some("2"))
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
