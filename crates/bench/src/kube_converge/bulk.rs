//! Storing thousands of Pods and NetworkPolicies in the lab's API server
//! quickly: `in_flight` requests at a time on one multi-threaded runtime,
//! a Pod as a create and a status patch (two requests).
//!
//! The lab's store would do it too, but it is built for the lab's few
//! writes: every request on a fresh thread entering the control plane's
//! namespace and driving a current-thread runtime, and every status write
//! a read-modify-write (three requests a Pod). Loading 5,000 Pods that way
//! takes minutes on two cores; this way well under one.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use weft_lab::netns;

/// Creates `docs` (Pods, with their `status`, and NetworkPolicies) through
/// the API server reachable from namespace `netns_name` with the admin
/// `kubeconfig`, at most `in_flight` requests at a time.
pub fn create_all(
    netns_name: &str,
    kubeconfig: &Path,
    docs: &[Value],
    in_flight: usize,
) -> Result<()> {
    let what = format!("store {} objects in the API server", docs.len());
    netns::run_in(netns_name, &what, || Ok(run(kubeconfig, docs, in_flight)))?
        .with_context(|| what.clone())
}

/// The runtime's threads are started here, inside the namespace, so every
/// socket they open lives there too.
fn run(kubeconfig: &Path, docs: &[Value], in_flight: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the bulk loader's runtime")?;
    rt.block_on(async {
        let client = weft_kube::client(Some(kubeconfig))
            .await
            .with_context(|| format!("connect with {}", kubeconfig.display()))?;
        futures::stream::iter(docs.iter().map(Ok))
            .try_for_each_concurrent(in_flight, |doc| create(client.clone(), doc))
            .await
    })
}

async fn create(client: Client, doc: &Value) -> Result<()> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let op = format!("create {kind} {ns}/{name}");
    match kind {
        "Pod" => {
            let pod: Pod = serde_json::from_value(doc.clone()).with_context(|| op.clone())?;
            let api = Api::<Pod>::namespaced(client, ns);
            api.create(&PostParams::default(), &pod)
                .await
                .with_context(|| op.clone())?;
            // A create resets the status (Pending): the kubelet's part
            // comes second, through the subresource.
            let status = json!({"status": doc["status"]});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .with_context(|| format!("write the status of Pod {ns}/{name}"))?;
        }
        "NetworkPolicy" => {
            let policy: NetworkPolicy =
                serde_json::from_value(doc.clone()).with_context(|| op.clone())?;
            Api::<NetworkPolicy>::namespaced(client, ns)
                .create(&PostParams::default(), &policy)
                .await
                .with_context(|| op.clone())?;
        }
        other => return Err(anyhow!("{op}: the bulk loader stores no {other}")),
    }
    Ok(())
}
