//! The store's kube backend: the lab's writes and reads through a real
//! kube-apiserver, for any kind the server serves (discovery +
//! `DynamicObject`), with server-side apply as `kubectl apply
//! --server-side --force-conflicts` does it.
//!
//! The API server listens only inside the control plane's namespace
//! (`<prefix>-cp`): the root namespace cannot reach it. A socket belongs
//! to the namespace of the thread that creates it, so every request runs
//! on a short-lived thread that entered that namespace, driving a
//! current-thread tokio runtime the store keeps (its pooled connections,
//! created there, stay there).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use kube::{Client, ResourceExt};
use serde_json::Value;
use weft_datastore::{Datastore, Snapshot};

use super::Revision;
use crate::control_plane;
use crate::error::{LabError, Result};
use crate::layout::Layout;
use crate::netns;
use crate::state::LabState;

/// The field manager of the lab's server-side applies (kubectl's role).
pub const FIELD_MANAGER: &str = "weftctl";

/// How often a read-modify-write is retried after a conflicting write.
const CONFLICT_RETRIES: usize = 8;

/// The lab's connection to its API server.
pub struct KubeStore {
    netns: String,
    rt: tokio::runtime::Runtime,
    client: Client,
    /// Filled on first use: which resource serves each kind.
    discovery: Mutex<Option<Arc<Discovery>>>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("netns", &self.netns)
            .finish_non_exhaustive()
    }
}

/// A closure rendering a client error for `op`: the API server's own
/// message when it sent one (it names the field at fault).
fn api_err(op: impl Into<String>) -> impl FnOnce(kube::Error) -> LabError {
    let op = op.into();
    move |e| LabError::Datastore {
        op,
        detail: match e {
            kube::Error::Api(status) if !status.message.is_empty() => status.message,
            other => other.to_string(),
        },
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl KubeStore {
    /// Connects to the API server of the lab in `layout` with the admin
    /// kubeconfig the control plane wrote.
    pub fn connect(layout: &Layout, state: &LabState) -> Result<KubeStore> {
        let netns = match &state.control_plane {
            Some(cp) => cp.netns.clone(),
            None => layout.control_plane_netns(),
        };
        let kubeconfig = control_plane::admin_kubeconfig(layout);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LabError::io("start the API client's runtime"))?;
        let what = format!("connect to the API server ({})", kubeconfig.display());
        // The client spawns its request buffer on the runtime: build it
        // inside one.
        let client = netns::run_in(&netns, &what, || {
            rt.block_on(weft_kube::client(Some(&kubeconfig)))
                .map_err(|e| LabError::failed(&what, e.to_string()))
        })?;
        Ok(KubeStore {
            netns,
            rt,
            client,
            discovery: Mutex::new(None),
        })
    }

    /// Runs the future `make` builds on the store's runtime, from a thread
    /// inside the control plane's namespace.
    fn run<T, F>(&self, what: &str, make: impl FnOnce(Client) -> F + Send) -> Result<T>
    where
        T: Send,
        F: Future<Output = Result<T>>,
    {
        let client = self.client.clone();
        netns::run_in(&self.netns, what, || self.rt.block_on(make(client)))
    }

    /// The server's resources, discovered once (aggregated discovery: two
    /// requests); `refresh` discovers again (a kind added since, a CRD).
    fn discovery(&self, refresh: bool) -> Result<Arc<Discovery>> {
        let mut cached = self.discovery.lock().expect("discovery lock");
        if let (Some(d), false) = (cached.as_ref(), refresh) {
            return Ok(d.clone());
        }
        let d = Arc::new(self.run("discover the API server's resources", |c| async {
            Discovery::new(c)
                .run_aggregated()
                .await
                .map_err(api_err("discover the API server's resources"))
        })?);
        *cached = Some(d.clone());
        Ok(d)
    }

    /// The resource serving `apiVersion`/`kind`.
    fn resolve_gvk(&self, api_version: &str, kind: &str) -> Result<(ApiResource, ApiCapabilities)> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        for refresh in [false, true] {
            if let Some(found) = self.discovery(refresh)?.resolve_gvk(&gvk) {
                return Ok(found);
            }
        }
        Err(LabError::Invalid(format!(
            "the API server serves no {kind} in {api_version}"
        )))
    }

    /// The resource serving `kind` at its preferred version, the core
    /// group first, then the others alphabetically (as kubectl resolves a
    /// bare kind).
    fn resolve_kind(&self, kind: &str) -> Result<(ApiResource, ApiCapabilities)> {
        for refresh in [false, true] {
            let d = self.discovery(refresh)?;
            let found = d
                .groups_alphabetical()
                .into_iter()
                .find_map(|g| g.recommended_kind(kind));
            if let Some(found) = found {
                return Ok(found);
            }
        }
        Err(LabError::Invalid(format!(
            "the API server serves no kind {kind:?}"
        )))
    }

    /// Server-side applies each document in order; returns the
    /// resourceVersion of the last one.
    pub fn apply(&self, docs: Vec<Value>, what: &str) -> Result<Revision> {
        let mut last = None;
        for doc in docs {
            let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_owned();
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if api_version.is_empty() || kind.is_empty() || name.is_empty() {
                return Err(LabError::Invalid(format!(
                    "{what}: every object needs apiVersion, kind and metadata.name"
                )));
            }
            let (ar, caps) = self.resolve_gvk(&api_version, &kind)?;
            let ns = doc["metadata"]["namespace"].as_str().map(str::to_owned);
            let op = format!("{what}: apply {kind} {}", key(ns.as_deref(), &name));
            let applied = self.run(&op, |c| async {
                let api = api_for(c, &ar, &caps, ns.as_deref());
                let params = PatchParams::apply(FIELD_MANAGER).force();
                api.patch(&name, &params, &Patch::Apply(&doc))
                    .await
                    .map_err(api_err(&op))
            })?;
            last = applied.resource_version();
        }
        Ok(Revision::ResourceVersion(last.unwrap_or_default()))
    }

    /// Deletes the objects `docs` name (apiVersion, kind, metadata); `None`
    /// when none existed.
    pub fn delete_docs(&self, docs: &[Value]) -> Result<Option<Revision>> {
        let mut last = None;
        for doc in docs {
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            let kind = doc["kind"].as_str().unwrap_or_default();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let ns = doc["metadata"]["namespace"].as_str();
            let resource = self.resolve_gvk(api_version, kind)?;
            if let Some(rev) = self.delete(Some(resource), kind, ns, name)? {
                last = Some(rev);
            }
        }
        Ok(last)
    }

    /// Deletes one object (`resource` when already resolved); `None` when
    /// it did not exist. Pods with grace period 0: the lab's kubelet has
    /// stopped them already and no kubelet will confirm a graceful end.
    pub fn delete(
        &self,
        resource: Option<(ApiResource, ApiCapabilities)>,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Revision>> {
        let (ar, caps) = match resource {
            Some(r) => r,
            None => self.resolve_kind(kind)?,
        };
        let op = format!("delete {kind} {}", key(namespace, name));
        let params = match ar.kind.as_str() {
            "Pod" => DeleteParams::default().grace_period(0),
            _ => DeleteParams::default(),
        };
        self.run(&op, |c| async {
            let api = api_for(c, &ar, &caps, namespace);
            match api.delete(name, &params).await {
                Ok(gone) => Ok(Some(Revision::ResourceVersion(
                    gone.left()
                        .and_then(|o| o.resource_version())
                        .unwrap_or_default(),
                ))),
                Err(e) if is_status(&e, 404) => Ok(None),
                Err(e) => Err(api_err(&op)(e)),
            }
        })
    }

    /// One object, with `apiVersion` and `kind`.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Option<Value>> {
        let (ar, caps) = self.resolve_kind(kind)?;
        let op = format!("read {kind} {}", key(namespace, name));
        let obj = self.run(&op, |c| async {
            api_for(c, &ar, &caps, namespace)
                .get_opt(name)
                .await
                .map_err(api_err(&op))
        })?;
        obj.map(|o| to_value(o, &ar)).transpose()
    }

    /// Every object of `kind` in every namespace, each with `apiVersion`
    /// and `kind` (a LIST's items carry neither).
    pub fn list(&self, kind: &str) -> Result<Vec<Value>> {
        let (ar, _) = self.resolve_kind(kind)?;
        self.list_resource(&ar)
    }

    fn list_resource(&self, ar: &ApiResource) -> Result<Vec<Value>> {
        let op = format!("list {}s", ar.kind);
        let list = self.run(&op, |c| async {
            Api::<DynamicObject>::all_with(c, ar)
                .list(&ListParams::default())
                .await
                .map_err(api_err(&op))
        })?;
        list.items.into_iter().map(|o| to_value(o, ar)).collect()
    }

    /// Read-modify-write guarded by the resourceVersion read: the object
    /// (without `status`) through the resource, `status` through the
    /// status subresource where the kind has one. A conflict starts over.
    pub fn update(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        mut f: impl FnMut(&mut Value),
    ) -> Result<Revision> {
        let (ar, caps) = self.resolve_kind(kind)?;
        let has_status = caps.subresources.iter().any(|(s, _)| s.plural == "status");
        let what = format!("{kind} {}", key(namespace, name));
        let op = format!("update {what}");
        for _ in 0..CONFLICT_RETRIES {
            let old = self
                .get(kind, namespace, name)?
                .ok_or_else(|| LabError::Invalid(format!("{what} does not exist")))?;
            let mut new = old.clone();
            f(&mut new);
            let status_changed = has_status && new.get("status") != old.get("status");
            let main_changed = without_status(&new) != without_status(&old);
            if !status_changed && !main_changed {
                return Ok(Revision::ResourceVersion(resource_version(&old)));
            }
            let written = self.run(&op, |c| async {
                let api = api_for(c, &ar, &caps, namespace);
                Ok(write(&api, name, &new, main_changed, status_changed, &op).await)
            })?;
            match written {
                Ok(stored) => {
                    return Ok(Revision::ResourceVersion(
                        stored.resource_version().unwrap_or_default(),
                    ));
                }
                Err(e) if is_status(&e, 409) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return Err(api_err(&op)(e)),
            }
        }
        Err(LabError::failed(
            op,
            format!("changed by others {CONFLICT_RETRIES} times while being written"),
        ))
    }

    /// The cluster digest (`weft_kube::cluster_digest`): what an agent
    /// that has caught up reports.
    pub fn digest(&self) -> Result<String> {
        let op = "digest the cluster's objects";
        self.run(op, |c| async move {
            weft_kube::cluster_digest(&c)
                .await
                .map_err(|e| LabError::failed(op, e.to_string()))
        })
    }

    /// The watched kinds as the agents' model sees them: listed from the
    /// server, converted by the file datastore's own snapshot code (in a
    /// scratch datastore), so the lab's evaluator reads exactly what the
    /// agents do.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut docs = Vec::new();
        for kind in weft_kube::WATCHED_KINDS {
            for mut doc in self.list(kind)? {
                if let Some(meta) = doc["metadata"].as_object_mut() {
                    meta.remove("managedFields");
                    meta.remove("resourceVersion");
                }
                docs.push(doc);
            }
        }
        let scratch = weft_testkit::TempDir::new("lab-snapshot").map_err(|e| {
            LabError::failed(
                "create a scratch datastore for a snapshot",
                format!("{e:#}"),
            )
        })?;
        let fail = |e: weft_datastore::Error| LabError::Datastore {
            op: "convert the API server's objects into a snapshot".into(),
            detail: e.to_string(),
        };
        let ds = Datastore::open(scratch.path()).map_err(fail)?;
        if !docs.is_empty() {
            ds.apply(docs).map_err(fail)?;
        }
        ds.snapshot().map_err(fail)
    }
}

/// Writes `new` (read at its resourceVersion): the object without its
/// status when `main`, then the status through its subresource when
/// `status`, carrying the version the first write produced.
async fn write(
    api: &Api<DynamicObject>,
    name: &str,
    new: &Value,
    main: bool,
    status: bool,
    op: &str,
) -> std::result::Result<DynamicObject, kube::Error> {
    let mut current = new.clone();
    if main {
        let stored = api
            .replace(name, &PostParams::default(), &from_value(new, op)?)
            .await?;
        if !status {
            return Ok(stored);
        }
        current["metadata"]["resourceVersion"] =
            Value::from(stored.resource_version().unwrap_or_default());
    }
    api.replace_status(name, &PostParams::default(), &from_value(&current, op)?)
        .await
}

/// The digest node `node`'s agent last wrote to its status file
/// (`<node dir>/status.json`, weftd's `--status-file`), if any.
pub fn applied_digest(layout: &Layout, node: &str) -> Result<Option<Revision>> {
    let path = layout.node_dir(node).join(crate::agents::STATUS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LabError::io(format!("read {}", path.display()))(e)),
    };
    let status: Value = serde_json::from_slice(&bytes)
        .map_err(LabError::json(format!("decode {}", path.display())))?;
    Ok(status["digest"]
        .as_str()
        .map(|d| Revision::Digest(d.to_owned())))
}

fn api_for(
    client: Client,
    ar: &ApiResource,
    caps: &ApiCapabilities,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client, namespace.unwrap_or("default"), ar),
        Scope::Cluster => Api::all_with(client, ar),
    }
}

fn to_value(mut obj: DynamicObject, ar: &ApiResource) -> Result<Value> {
    obj.types = Some(kube::core::TypeMeta {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
    });
    serde_json::to_value(&obj).map_err(LabError::json(format!("encode a {}", ar.kind)))
}

fn from_value(v: &Value, op: &str) -> std::result::Result<DynamicObject, kube::Error> {
    serde_json::from_value(v.clone())
        .map_err(|e| kube::Error::Service(format!("{op}: not a Kubernetes object: {e}").into()))
}

fn without_status(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

fn resource_version(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_compared_apart() {
        let a = serde_json::json!({"metadata": {"name": "n"}, "status": {"phase": "Pending"}});
        let mut b = a.clone();
        b["status"]["phase"] = "Running".into();
        assert_eq!(without_status(&a), without_status(&b));
        assert_ne!(a.get("status"), b.get("status"));
    }

    #[test]
    fn missing_status_file_is_nothing_applied() {
        let dir = weft_testkit::TempDir::new("store-kube").unwrap();
        let layout = Layout::new(dir.path().join("lab"));
        assert_eq!(applied_digest(&layout, "node1").unwrap(), None);
        let node_dir = layout.node_dir("node1");
        std::fs::create_dir_all(&node_dir).unwrap();
        std::fs::write(
            node_dir.join("status.json"),
            r#"{"node":"node1","ready":true,"digest":"0123456789abcdef","revision":4,"time":1}"#,
        )
        .unwrap();
        assert_eq!(
            applied_digest(&layout, "node1").unwrap(),
            Some(Revision::Digest("0123456789abcdef".into()))
        );
    }
}
