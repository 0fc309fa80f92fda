//! The lab as API server and EndpointSlice controller for Services on the
//! file datastore: cluster IPs and NodePorts allocated when a manifest is
//! applied ([`alloc`]), EndpointSlices written from the selected pods
//! ([`slices`]) and kept current by [`reconcile_endpoints`], which every
//! lab command that changes Services or Pods runs after its change. On a
//! real API server (`--datastore kube`) the server allocates and
//! kube-controller-manager writes the slices: both are skipped there, and
//! only [`status`] (read through the store) serves both.

pub mod alloc;
pub mod slices;
pub mod whoami;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use crate::error::{LabError, Result};
use crate::store::{Revision, Store};
use alloc::{Allocated, key_of};
use slices::{MANAGED_BY, MANAGED_BY_LABEL, desired_slices};

/// A Service as `lab status --json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// `spec.type`.
    #[serde(rename = "type")]
    pub service_type: String,
    /// Cluster IPs, primary family first.
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Vec<IpAddr>,
    /// Ports as `PROTOCOL/port`, with `:nodePort` when there is one.
    pub ports: Vec<String>,
    /// NodePorts, in port order.
    pub node_ports: Vec<u16>,
    /// Ready endpoint addresses over all slices.
    pub endpoints: Vec<IpAddr>,
}

/// Fills in cluster IPs and NodePorts of the Services among `docs` (a
/// manifest about to be applied), as the API server does on create. The
/// lab's `families` decide the defaults. Nothing to do on a real API
/// server, which allocates them itself.
pub fn allocate_services(store: &Store, docs: &mut [Value], families: &[u8]) -> Result<()> {
    if store.is_kube() {
        return Ok(());
    }
    let is_service =
        |d: &Value| d["apiVersion"].as_str() == Some("v1") && d["kind"].as_str() == Some("Service");
    if !docs.iter().any(is_service) {
        return Ok(());
    }
    let stored = store.list("Service")?;
    let applied: Vec<String> = docs.iter().filter(|d| is_service(d)).map(key_of).collect();
    // What the Services not being replaced hold, and the manifest's
    // explicit values, are taken before anything is picked.
    let mut taken = Allocated::default();
    let kept = stored.iter().filter(|s| !applied.contains(&key_of(s)));
    for svc in kept.chain(docs.iter().filter(|d| is_service(d))) {
        taken.add(svc);
    }
    for doc in docs.iter_mut().filter(|d| is_service(d)) {
        let key = key_of(doc);
        let old = stored.iter().find(|s| key_of(s) == key);
        alloc::allocate(doc, old, families, &mut taken)?;
    }
    Ok(())
}

/// Brings the lab-managed EndpointSlices in line with the Services and
/// Pods in the datastore: writes what changed, deletes slices of Services
/// that are gone. Returns the new revision, `None` when nothing changed
/// (always on a real API server, whose controller does this).
pub fn reconcile_endpoints(store: &Store) -> Result<Option<Revision>> {
    let Some(ds) = store.file_datastore() else {
        return Ok(None);
    };
    let snap = ds.snapshot().map_err(|e| LabError::Datastore {
        op: "read the datastore for the EndpointSlice controller".into(),
        detail: e.to_string(),
    })?;
    let mut selectors = BTreeMap::new();
    for svc in store.list("Service")? {
        let selector: BTreeMap<String, String> = svc["spec"]["selector"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        selectors.insert(key_of(&svc), selector);
    }
    let want = desired_slices(&snap.services, &selectors, &snap.pods);
    let wanted: Vec<String> = want.iter().map(key_of).collect();
    let stale: Vec<Value> = store
        .list("EndpointSlice")?
        .into_iter()
        .filter(|s| s["metadata"]["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY))
        .filter(|s| !wanted.contains(&key_of(s)))
        .collect();
    let before = store.revision()?;
    let mut revision = None;
    if !want.is_empty() {
        let rev = store.apply(want, "EndpointSlices")?;
        revision = (rev != before).then_some(rev);
    }
    if !stale.is_empty() {
        for slice in &stale {
            let ns = slice["metadata"]["namespace"].as_str();
            let name = slice["metadata"]["name"].as_str().unwrap_or_default();
            if let Some(rev) = store.delete("EndpointSlice", ns, name)? {
                revision = Some(rev);
            }
        }
    }
    Ok(revision)
}

/// Every Service with its addresses, ports and ready endpoints.
pub fn status(store: &Store) -> Result<Vec<ServiceStatus>> {
    let slices = store.list("EndpointSlice")?;
    let mut out = Vec::new();
    for svc in store.list("Service")? {
        let key = key_of(&svc);
        let (namespace, name) = key.split_once('/').unwrap_or(("default", &key));
        let ports: Vec<&Value> = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let endpoints = slices
            .iter()
            .filter(|s| {
                s["metadata"]["namespace"].as_str() == Some(namespace)
                    && s["metadata"]["labels"][weft_model::service::SERVICE_NAME_LABEL].as_str()
                        == Some(name)
            })
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"].as_bool() != Some(false))
            .filter_map(|e| e["addresses"][0].as_str()?.parse().ok())
            .collect();
        out.push(ServiceStatus {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            service_type: svc["spec"]["type"]
                .as_str()
                .unwrap_or("ClusterIP")
                .to_owned(),
            cluster_ips: alloc::cluster_ips(&svc),
            ports: ports
                .iter()
                .map(|p| {
                    let mut text = format!(
                        "{}/{}",
                        p["protocol"].as_str().unwrap_or("TCP"),
                        p["port"].as_u64().unwrap_or(0)
                    );
                    if let Some(np) = p["nodePort"].as_u64() {
                        text.push_str(&format!(":{np}"));
                    }
                    text
                })
                .collect(),
            node_ports: ports
                .iter()
                .filter_map(|p| u16::try_from(p["nodePort"].as_u64()?).ok())
                .collect(),
            endpoints,
        });
    }
    Ok(out)
}

/// One Service's status, `namespace/name`.
pub fn service(store: &Store, key: &str) -> Result<ServiceStatus> {
    status(store)?
        .into_iter()
        .find(|s| format!("{}/{}", s.namespace, s.name) == key)
        .ok_or_else(|| LabError::Invalid(format!("no Service {key}")))
}
