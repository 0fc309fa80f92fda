//! The lab's side of the file datastore: the lab plays the API server's
//! writers (kube-controller-manager for Nodes, the kubelet for Pod status,
//! kubectl for apply/delete/label). Errors are rendered with the operation
//! that failed.

use serde_json::Value;
use weft_datastore::Datastore;

use crate::error::{LabError, Result};
use crate::layout::Layout;
use crate::objects::{self, LabelEdit};

/// The lab's datastore.
#[derive(Debug, Clone)]
pub struct Store {
    ds: Datastore,
}

fn ds_err(op: impl Into<String>) -> impl FnOnce(weft_datastore::Error) -> LabError {
    let op = op.into();
    move |e| LabError::Datastore {
        op,
        detail: e.to_string(),
    }
}

impl Store {
    /// Opens (creating) the datastore of `layout`.
    pub fn open(layout: &Layout) -> Result<Store> {
        let root = layout.datastore();
        let ds =
            Datastore::open(&root).map_err(ds_err(format!("open datastore {}", root.display())))?;
        Ok(Store { ds })
    }

    /// The datastore itself, for callers that need more.
    pub fn datastore(&self) -> &Datastore {
        &self.ds
    }

    /// Creates or replaces objects; returns the new revision.
    pub fn apply(&self, docs: Vec<Value>, what: &str) -> Result<u64> {
        self.ds.apply(docs).map_err(ds_err(format!("write {what}")))
    }

    /// Applies manifest text (`weftctl apply -f`).
    pub fn apply_text(&self, text: &str, source: &str) -> Result<u64> {
        self.ds
            .apply_text(text)
            .map_err(ds_err(format!("apply {source}")))
    }

    /// Deletes what the manifest text names (`weftctl delete -f`); `None`
    /// when none of it existed.
    pub fn delete_text(&self, text: &str, source: &str) -> Result<Option<u64>> {
        let docs = weft_model_docs(text, source)?;
        self.ds
            .delete_docs(docs)
            .map_err(ds_err(format!("delete {source}")))
    }

    /// Deletes one object; `None` when it did not exist.
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Option<u64>> {
        self.ds
            .delete(kind, namespace, name)
            .map_err(ds_err(format!(
                "delete {kind} {}",
                display_key(namespace, name)
            )))
    }

    /// One object.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Option<Value>> {
        self.ds.get(kind, namespace, name).map_err(ds_err(format!(
            "read {kind} {}",
            display_key(namespace, name)
        )))
    }

    /// Read-modify-write of one object; fails when it does not exist.
    pub fn update(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<u64> {
        let what = format!("{kind} {}", display_key(namespace, name));
        self.ds
            .update(kind, namespace, name, f)
            .map_err(ds_err(format!("update {what}")))?
            .ok_or_else(|| LabError::Invalid(format!("{what} does not exist")))
    }

    /// Applies `kubectl label` edits to one object. Returns the revision.
    pub fn label(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        edits: &[LabelEdit],
    ) -> Result<u64> {
        let mut outcome = Ok(false);
        let rev = self.update(kind, namespace, name, |obj| {
            outcome = objects::edit_labels(obj, edits);
        })?;
        outcome?;
        Ok(rev)
    }

    /// The datastore's current revision.
    pub fn revision(&self) -> Result<u64> {
        self.ds
            .revision()
            .map_err(ds_err("read the datastore revision"))
    }

    /// The revision node `node`'s agent reports having applied, if any.
    pub fn applied_revision(&self, node: &str) -> Result<Option<u64>> {
        let status = self
            .ds
            .read_status(node)
            .map_err(ds_err(format!("read the status of node {node}")))?;
        Ok(status.and_then(|s| s.get("revision")?.as_u64()))
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
