//! The lab's cluster store, as the API server's clients see it: the lab
//! plays kube-controller-manager's and the kubelet's writers (Nodes, Pod
//! status) and kubectl (apply/delete/label). Behind the same methods sit
//! two backends, chosen by the lab's `datastore`: the file datastore
//! (`file`) or a real kube-apiserver (`kube`, [`kube`]). Errors are
//! rendered with the operation that failed.

#[path = "store_kube.rs"]
mod kube;

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use weft_datastore::{Datastore, Snapshot};

use crate::error::{LabError, Result};
use crate::layout::Layout;
use crate::objects::{self, LabelEdit};
use crate::state::LabState;

pub use kube::KubeStore;

/// `LabState::datastore` of a lab on the file datastore.
pub const FILE: &str = "file";
/// `LabState::datastore` of a lab on a real API server.
pub const KUBE: &str = "kube";

/// Where the cluster stands after a write, or as a whole: what `lab sync`
/// compares the agents' reports against. Each backend has its own token;
/// they are never compared with each other. In JSON a file revision is a
/// number, the others strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(untagged)]
pub enum Revision {
    /// The file datastore's revision: a counter every write transaction
    /// bumps (a write returns the one it committed).
    File(u64),
    /// The resourceVersion the API server gave the object a write stored
    /// last (opaque: only the server orders them).
    ResourceVersion(String),
    /// A digest of every watched object's resourceVersion
    /// (`weft_kube::cluster_digest`): the whole cluster's state in kube
    /// mode, and what an agent reports having applied.
    Digest(String),
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revision::File(r) => write!(f, "revision {r}"),
            Revision::ResourceVersion(rv) => write!(f, "resourceVersion {rv}"),
            Revision::Digest(d) => write!(f, "digest {d}"),
        }
    }
}

impl Revision {
    /// The token alone, without its name (`12`, `a1b2…`), for tables.
    pub fn token(&self) -> String {
        match self {
            Revision::File(r) => r.to_string(),
            Revision::ResourceVersion(s) | Revision::Digest(s) => s.clone(),
        }
    }

    /// Whether an agent that reports `self` has applied `want`: a file
    /// revision at least as new (revisions only grow), a digest equal.
    pub fn reached(&self, want: &Revision) -> bool {
        match (self, want) {
            (Revision::File(have), Revision::File(want)) => have >= want,
            (Revision::Digest(have), Revision::Digest(want)) => have == want,
            _ => false,
        }
    }
}

/// The lab's cluster store.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    layout: Layout,
}

#[derive(Debug, Clone)]
enum Backend {
    File(Datastore),
    Kube(Arc<KubeStore>),
}

fn ds_err(op: impl Into<String>) -> impl FnOnce(weft_datastore::Error) -> LabError {
    let op = op.into();
    move |e| LabError::Datastore {
        op,
        detail: e.to_string(),
    }
}

impl Store {
    /// Opens the store of the lab in `layout`: the API server when its
    /// `lab.json` says `datastore: kube`, else (also before `lab up` has
    /// recorded anything) the file datastore, created if missing.
    pub fn open(layout: &Layout) -> Result<Store> {
        match LabState::load(layout)? {
            Some(state) if state.datastore == KUBE => Ok(Store {
                backend: Backend::Kube(Arc::new(KubeStore::connect(layout, &state)?)),
                layout: layout.clone(),
            }),
            _ => Store::open_file(layout),
        }
    }

    /// Opens (creating) the file datastore of `layout`.
    pub fn open_file(layout: &Layout) -> Result<Store> {
        let root = layout.datastore();
        let ds =
            Datastore::open(&root).map_err(ds_err(format!("open datastore {}", root.display())))?;
        Ok(Store {
            backend: Backend::File(ds),
            layout: layout.clone(),
        })
    }

    /// Whether this store is a real API server (which allocates Service
    /// addresses and writes EndpointSlices itself).
    pub fn is_kube(&self) -> bool {
        matches!(self.backend, Backend::Kube(_))
    }

    /// The file datastore, when that is the backend: for callers that need
    /// its own operations (its EndpointSlice controller, status files).
    pub fn file_datastore(&self) -> Option<&Datastore> {
        match &self.backend {
            Backend::File(ds) => Some(ds),
            Backend::Kube(_) => None,
        }
    }

    /// Creates or replaces objects (server-side apply in kube mode);
    /// returns where the store stands after the write.
    pub fn apply(&self, docs: Vec<Value>, what: &str) -> Result<Revision> {
        match &self.backend {
            Backend::File(ds) => ds
                .apply(docs)
                .map(Revision::File)
                .map_err(ds_err(format!("write {what}"))),
            Backend::Kube(k) => k.apply(docs, what),
        }
    }

    /// Applies manifest text (`weftctl apply -f`).
    pub fn apply_text(&self, text: &str, source: &str) -> Result<Revision> {
        match &self.backend {
            Backend::File(ds) => ds
                .apply_text(text)
                .map(Revision::File)
                .map_err(ds_err(format!("apply {source}"))),
            Backend::Kube(k) => {
                let docs = weft_datastore::parse_manifest(text)
                    .map_err(|e| LabError::Invalid(format!("read {source}: {e}")))?;
                k.apply(docs, &format!("apply {source}"))
            }
        }
    }

    /// Deletes what the manifest text names (`weftctl delete -f`); `None`
    /// when none of it existed.
    pub fn delete_text(&self, text: &str, source: &str) -> Result<Option<Revision>> {
        let docs = weft_model_docs(text, source)?;
        match &self.backend {
            Backend::File(ds) => ds
                .delete_docs(docs)
                .map(|r| r.map(Revision::File))
                .map_err(ds_err(format!("delete {source}"))),
            Backend::Kube(k) => k.delete_docs(&docs),
        }
    }

    /// Deletes one object; `None` when it did not exist. Pods go at once
    /// (grace period 0): the lab's kubelet has already stopped them.
    pub fn delete(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Revision>> {
        match &self.backend {
            Backend::File(ds) => ds
                .delete(kind, namespace, name)
                .map(|r| r.map(Revision::File))
                .map_err(ds_err(format!(
                    "delete {kind} {}",
                    display_key(namespace, name)
                ))),
            Backend::Kube(k) => k.delete(None, kind, namespace, name),
        }
    }

    /// One object.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Option<Value>> {
        match &self.backend {
            Backend::File(ds) => ds.get(kind, namespace, name).map_err(ds_err(format!(
                "read {kind} {}",
                display_key(namespace, name)
            ))),
            Backend::Kube(k) => k.get(kind, namespace, name),
        }
    }

    /// Every object of `kind`, all namespaces, each with `apiVersion` and
    /// `kind` set.
    pub fn list(&self, kind: &str) -> Result<Vec<Value>> {
        match &self.backend {
            Backend::File(ds) => ds.list(kind).map_err(ds_err(format!("list {kind}s"))),
            Backend::Kube(k) => k.list(kind),
        }
    }

    /// Read-modify-write of one object; fails when it does not exist. In
    /// kube mode a change under `status` goes through the status
    /// subresource, the rest through the object, each guarded by the
    /// resourceVersion read (a conflicting write makes `f` run again on
    /// the fresh object, so `f` must be repeatable).
    pub fn update(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        f: impl FnMut(&mut Value),
    ) -> Result<Revision> {
        let what = format!("{kind} {}", display_key(namespace, name));
        match &self.backend {
            Backend::File(ds) => ds
                .update(kind, namespace, name, f)
                .map_err(ds_err(format!("update {what}")))?
                .map(Revision::File)
                .ok_or_else(|| LabError::Invalid(format!("{what} does not exist"))),
            Backend::Kube(k) => k.update(kind, namespace, name, f),
        }
    }

    /// Replaces the `status` of one object, as its controller (the kubelet,
    /// for a Pod) writes it: through the status subresource in kube mode.
    pub fn set_status(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        status: &Value,
    ) -> Result<Revision> {
        self.update(kind, namespace, name, |obj| obj["status"] = status.clone())
    }

    /// Applies `kubectl label` edits to one object. Returns the revision.
    pub fn label(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        edits: &[LabelEdit],
    ) -> Result<Revision> {
        let mut outcome = Ok(false);
        let rev = self.update(kind, namespace, name, |obj| {
            outcome = objects::edit_labels(obj, edits);
        })?;
        outcome?;
        Ok(rev)
    }

    /// Where the whole cluster stands: the datastore's revision, or in
    /// kube mode the digest of every watched object.
    pub fn revision(&self) -> Result<Revision> {
        match &self.backend {
            Backend::File(ds) => ds
                .revision()
                .map(Revision::File)
                .map_err(ds_err("read the datastore revision")),
            Backend::Kube(k) => k.digest().map(Revision::Digest),
        }
    }

    /// What node `node`'s agent reports having applied, if anything: its
    /// status in the file datastore, or in kube mode the digest in its
    /// status file (`<node dir>/status.json`).
    pub fn applied_revision(&self, node: &str) -> Result<Option<Revision>> {
        match &self.backend {
            Backend::File(ds) => {
                let status = ds
                    .read_status(node)
                    .map_err(ds_err(format!("read the status of node {node}")))?;
                Ok(status
                    .and_then(|s| s.get("revision")?.as_u64())
                    .map(Revision::File))
            }
            Backend::Kube(_) => kube::applied_digest(&self.layout, node),
        }
    }

    /// One consistent view of the cluster as the agents' model sees it.
    pub fn snapshot(&self) -> Result<Snapshot> {
        match &self.backend {
            Backend::File(ds) => ds.snapshot().map_err(ds_err(format!(
                "read a snapshot of {}",
                ds.root().display()
            ))),
            Backend::Kube(k) => k.snapshot(),
        }
    }
}

/// `ns/name` or `name`.
fn display_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Reads manifest text into JSON documents without interpreting them
/// (`delete -f` only needs identities), through the model's parser so
/// YAML and JSON read the same everywhere.
fn weft_model_docs(text: &str, source: &str) -> Result<Vec<Value>> {
    let objects = weft_model::parse_manifests(text)
        .map_err(|e| LabError::Invalid(format!("read {source}: {e}")))?;
    Ok(objects.into_iter().map(identity_doc).collect())
}

/// A minimal document naming an object.
fn identity_doc(object: weft_model::Object) -> Value {
    use weft_model::Object;
    let (api_version, kind, namespace, name) = match object {
        Object::Node(n) => ("v1".to_string(), "Node".to_string(), None, Some(n.name)),
        Object::Namespace(n) => (
            "v1".to_string(),
            "Namespace".to_string(),
            None,
            Some(n.name),
        ),
        Object::Pod(p) => (
            "v1".to_string(),
            "Pod".to_string(),
            Some(p.namespace),
            Some(p.name),
        ),
        Object::Other {
            api_version,
            kind,
            raw,
            name,
        } => {
            let ns = raw
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            (api_version, kind, ns, name)
        }
    };
    let mut meta = serde_json::Map::new();
    if let Some(name) = name {
        meta.insert("name".into(), Value::String(name));
    }
    if let Some(ns) = namespace {
        meta.insert("namespace".into(), Value::String(ns));
    }
    serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": meta})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_compare_within_their_backend() {
        assert!(Revision::File(5).reached(&Revision::File(4)));
        assert!(!Revision::File(3).reached(&Revision::File(4)));
        let d = |s: &str| Revision::Digest(s.into());
        assert!(d("ab").reached(&d("ab")));
        assert!(!d("ab").reached(&d("cd")));
        assert!(!Revision::File(1).reached(&d("1")));
        assert_eq!(Revision::File(7).to_string(), "revision 7");
        assert_eq!(d("ab12").to_string(), "digest ab12");
        assert_eq!(d("ab12").token(), "ab12");
    }

    #[test]
    fn identity_docs_name_only() {
        let docs = weft_model_docs(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x}\nspec: {ports: [{port: 80}]}\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            docs,
            vec![serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "x"}})]
        );
    }
}
