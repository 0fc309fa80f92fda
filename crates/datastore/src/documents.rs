//! Turning manifest documents into storable objects: parsing text,
//! flattening `List`s, checking identity, normalising metadata and
//! validating the kinds weft models.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::layout::{
    DEFAULT_NAMESPACE, ObjectKey, check_dns_label, check_kind, check_object_name, is_cluster_scoped,
};

/// A validated, normalised document and its identity.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) key: ObjectKey,
    pub(crate) value: Value,
}

/// Splits manifest text into documents: JSON when the first non-blank
/// character is `{` or `[` (an object or an array of objects), multi-document
/// YAML otherwise — the same rule as `weft_model::parse_manifests`, which
/// cannot be used here because it keeps no raw document for modelled kinds.
pub(crate) fn parse_text(text: &str) -> Result<Vec<Value>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return match serde_json::from_str(trimmed) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(doc) => Ok(vec![doc]),
            Err(e) => Err(Error::Parse(format!("invalid JSON: {e}"))),
        };
    }
    serde_yaml_ng::Deserializer::from_str(text)
        .enumerate()
        .map(|(index, doc)| {
            Value::deserialize(doc)
                .map_err(|e| Error::Parse(format!("document {index}: invalid YAML: {e}")))
        })
        .collect()
}

/// Flattens `List`s (`kind: List`, or any `*List` with `items`) into their
/// items, in order, and drops empty (null) documents.
pub(crate) fn flatten(docs: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        push_flat(doc, &mut out);
    }
    out
}

fn push_flat(doc: Value, out: &mut Vec<Value>) {
    let is_list = match doc.get("kind").and_then(Value::as_str) {
        Some("List") => true,
        Some(kind) => kind.ends_with("List") && doc.get("items").is_some_and(Value::is_array),
        None => false,
    };
    match doc {
        Value::Null => {}
        Value::Object(mut map) if is_list => {
            if let Some(Value::Array(items)) = map.remove("items") {
                for item in items {
                    push_flat(item, out);
                }
            }
        }
        doc => out.push(doc),
    }
}

/// Checks that a document names an object and returns its key, with
/// `metadata.namespace` defaulted (namespaced kinds) or removed
/// (cluster-scoped kinds, as the API server does) in `doc`.
pub(crate) fn identify(index: usize, doc: &mut Value) -> Result<ObjectKey> {
    let invalid = |reason: String| Error::Invalid { index, reason };
    let Value::Object(map) = doc else {
        return Err(invalid("not a mapping".to_owned()));
    };
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => {}
        _ => return Err(invalid("missing string field apiVersion".to_owned())),
    }
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("missing string field kind".to_owned()))?
        .to_owned();
    check_kind(&kind).map_err(|r| invalid(format!("kind {kind:?}: {r}")))?;
    let Some(Value::Object(meta)) = map.get_mut("metadata") else {
        return Err(invalid(format!("{kind} without metadata")));
    };
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{kind} without string field metadata.name")))?
        .to_owned();
    check_object_name(&kind, &name).map_err(|r| invalid(format!("{kind} {name:?}: {r}")))?;
    let namespace = if is_cluster_scoped(&kind) {
        meta.remove("namespace");
        None
    } else {
        let ns = match meta.get("namespace") {
            None | Some(Value::Null) => DEFAULT_NAMESPACE.to_owned(),
            Some(Value::String(ns)) => ns.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "{kind} {name}: metadata.namespace is not a string"
                )));
            }
        };
        check_dns_label(&ns)
            .map_err(|r| invalid(format!("{kind} {name}: namespace {ns:?}: {r}")))?;
        meta.insert("namespace".to_owned(), Value::String(ns.clone()));
        Some(ns)
    };
    Ok(ObjectKey {
        kind,
        namespace,
        name,
    })
}

/// Identifies, normalises and validates a document for writing: the
/// stored `resourceVersion` is dropped (the transaction stamps its own), and
/// `v1` Nodes, Namespaces, Pods, Services, `networking.k8s.io/v1`
/// NetworkPolicies and `discovery.k8s.io/v1` EndpointSlices must convert
/// into the model, so that a
/// bad manifest is refused with a precise error at `apply` time instead of
/// showing up later as a rejected object in every agent's snapshot.
pub(crate) fn prepare(index: usize, mut doc: Value) -> Result<Prepared> {
    let key = identify(index, &mut doc)?;
    if let Some(Value::Object(meta)) = doc.get_mut("metadata") {
        meta.remove("resourceVersion");
    }
    check_model(&doc).map_err(|reason| Error::Invalid {
        index,
        reason: format!("{key}: {reason}"),
    })?;
    Ok(Prepared { key, value: doc })
}

/// Checks that a modelled kind decodes and converts; other kinds pass.
pub(crate) fn check_model(doc: &Value) -> Result<(), String> {
    match model_kind(doc) {
        Some(ModelKind::Node) => convert::<core::Node, weft_model::Node>(doc).map(drop),
        Some(ModelKind::Namespace) => {
            convert::<core::Namespace, weft_model::Namespace>(doc).map(drop)
        }
        Some(ModelKind::Pod) => convert::<core::Pod, weft_model::Pod>(doc).map(drop),
        Some(ModelKind::NetworkPolicy) => network_policy(doc).map(drop),
        Some(ModelKind::Service) => convert::<core::Service, weft_model::Service>(doc).map(drop),
        Some(ModelKind::EndpointSlice) => {
            convert::<discovery::EndpointSlice, weft_model::EndpointSlice>(doc).map(drop)
        }
        None => Ok(()),
    }
}

/// The kinds that have a model type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ModelKind {
    Node,
    Namespace,
    Pod,
    NetworkPolicy,
    Service,
    EndpointSlice,
}

/// The API version of the NetworkPolicy weft models; other versions (a
/// CRD of the same kind in another group) are not Kubernetes policies.
const NETWORKING_V1: &str = "networking.k8s.io/v1";
/// The API version of the EndpointSlice weft models (`v1beta1` is gone from
/// the API server since Kubernetes 1.25).
const DISCOVERY_V1: &str = "discovery.k8s.io/v1";

/// Which model type a document converts into, if any (by group and version
/// as well as kind: another group's `Node` is not a Kubernetes node).
pub(crate) fn model_kind(doc: &Value) -> Option<ModelKind> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str)?;
    match (api_version, doc.get("kind").and_then(Value::as_str)?) {
        ("v1", "Node") => Some(ModelKind::Node),
        ("v1", "Namespace") => Some(ModelKind::Namespace),
        ("v1", "Pod") => Some(ModelKind::Pod),
        (NETWORKING_V1, "NetworkPolicy") => Some(ModelKind::NetworkPolicy),
        ("v1", "Service") => Some(ModelKind::Service),
        (DISCOVERY_V1, "EndpointSlice") => Some(ModelKind::EndpointSlice),
        _ => None,
    }
}

/// Decodes and validates a NetworkPolicy document, the error naming the
/// failing field (`spec.ingress[0].ports[1].port: ...`). Through
/// [`convert`] rather than `NetworkPolicy::from_value`, whose decode error
/// names a document index that means nothing here.
pub(crate) fn network_policy(doc: &Value) -> Result<weft_model::NetworkPolicy, String> {
    convert::<networking::NetworkPolicy, _>(doc)
}

/// Decodes a document as the Kubernetes type `K` and converts it into the
/// model type `M`, the error saying which step failed.
pub(crate) fn convert<K, M>(doc: &Value) -> Result<M, String>
where
    K: serde::de::DeserializeOwned,
    for<'a> M: TryFrom<&'a K, Error = weft_model::Error>,
{
    let k = K::deserialize(doc).map_err(|e| format!("decode: {e}"))?;
    M::try_from(&k).map_err(|e| e.to_string())
}

/// Whether two stored forms are the same object content, ignoring
/// `metadata.resourceVersion`: rewriting identical content would bump the
/// revision and wake every agent for nothing.
pub(crate) fn same_content(a: &Value, b: &Value) -> bool {
    without_resource_version(a) == without_resource_version(b)
}

fn without_resource_version(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        meta.remove("resourceVersion");
    }
    v
}

/// Sets `metadata.resourceVersion` to `revision` (a string, as in
/// Kubernetes).
pub(crate) fn stamp(doc: &mut Value, revision: u64) {
    if let Some(Value::Object(meta)) = doc.get_mut("metadata") {
        meta.insert(
            "resourceVersion".to_owned(),
            Value::String(revision.to_string()),
        );
    }
}

/// Carries the stored `status` over to a replacement that has none: as on
/// the API server, replacing an object's spec does not wipe what the
/// kubelet or an agent reported (a re-applied Pod keeps its IPs).
pub(crate) fn keep_status(new: &mut Value, old: &Value) {
    let Some(status) = old.get("status") else {
        return;
    };
    if let Value::Object(map) = new {
        if !map.contains_key("status") {
            map.insert("status".to_owned(), status.clone());
        }
    }
}

#[cfg(test)]
#[path = "documents_tests.rs"]
mod tests;
