//! Reading Kubernetes manifests (YAML or JSON) into model objects.
//!
//! YAML goes through [`serde_yaml_ng`]: `serde_yaml` is archived, and of its
//! maintained forks `serde_yaml_ng` keeps the same API (multi-document
//! `Deserializer::from_str`) and the same battle-tested libyaml-derived
//! parser, so manifests parse exactly as they did with `serde_yaml`.
//! `serde_norway` is an equivalent fork; either would do.

use k8s_openapi::api::core::v1 as core;
use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;
use crate::objects::{Namespace, Node, Pod};

/// One object read from a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    /// A `v1` Node.
    Node(Node),
    /// A `v1` Namespace.
    Namespace(Namespace),
    /// A `v1` Pod.
    Pod(Pod),
    /// Any other kind, kept raw until the model grows a type for it
    /// (NetworkPolicy, Service, EndpointSlice, ...).
    Other {
        /// `apiVersion`, e.g. `networking.k8s.io/v1`.
        api_version: String,
        /// `kind`, e.g. `NetworkPolicy`.
        kind: String,
        /// `metadata.name`, if any.
        name: Option<String>,
        /// The whole document.
        raw: Value,
    },
}

/// Parses a manifest: one or more YAML documents, or a JSON document.
///
/// Each document is one object or a `List` (`kind: List` or any `*List`
/// with `items`), whose items are flattened in order. Empty documents are
/// skipped. Text whose first non-blank character is `{` or `[` is read as
/// JSON (an object, or an array of objects).
pub fn parse_manifests(text: &str) -> Result<Vec<Object>, Error> {
    let trimmed = text.trim_start();
    let documents: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str(trimmed).map_err(Error::Json)? {
            Value::Array(items) => items,
            doc => vec![doc],
        }
    } else {
        serde_yaml_ng::Deserializer::from_str(text)
            .enumerate()
            .map(|(index, doc)| {
                Value::deserialize(doc).map_err(|source| Error::Yaml { index, source })
            })
            .collect::<Result<_, _>>()?
    };

    let mut objects = Vec::new();
    for (index, doc) in documents.into_iter().enumerate() {
        push_document(index, doc, &mut objects)?;
    }
    Ok(objects)
}

/// Appends the objects of one document (several when it is a List).
fn push_document(index: usize, doc: Value, out: &mut Vec<Object>) -> Result<(), Error> {
    if doc.is_null() {
        return Ok(());
    }
    let bad = |reason: &str| Error::Document {
        index,
        reason: reason.to_owned(),
    };
    if !doc.is_object() {
        return Err(bad("not a mapping"));
    }
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing string field kind"))?
        .to_owned();
    if kind == "List" || (kind.ends_with("List") && doc.get("items").is_some()) {
        let Some(Value::Array(items)) = doc.get("items").cloned() else {
            return Err(bad("List without an items array"));
        };
        for item in items {
            if item.is_null() {
                return Err(bad("null item in List"));
            }
            push_document(index, item, out)?;
        }
        return Ok(());
    }
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing string field apiVersion"))?
        .to_owned();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned);

    let decode_err = |source| Error::Decode {
        index,
        kind: kind.clone(),
        name: name.clone().unwrap_or_else(|| "<unnamed>".to_owned()),
        source,
    };
    let convert_err = |source| Error::InDocument {
        index,
        source: Box::new(source),
    };
    let object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Node") => {
            let k: core::Node = serde_json::from_value(doc).map_err(decode_err)?;
            Object::Node(Node::try_from(&k).map_err(convert_err)?)
        }
        ("v1", "Namespace") => {
            let k: core::Namespace = serde_json::from_value(doc).map_err(decode_err)?;
            Object::Namespace(Namespace::try_from(&k).map_err(convert_err)?)
        }
        ("v1", "Pod") => {
            let k: core::Pod = serde_json::from_value(doc).map_err(decode_err)?;
            Object::Pod(Pod::try_from(&k).map_err(convert_err)?)
        }
        _ => Object::Other {
            api_version,
            kind,
            name,
            raw: doc,
        },
    };
    out.push(object);
    Ok(())
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
