//! A consistent view of the whole store, converted into the model.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use serde_json::Value;

use crate::documents::{self, ModelKind};
use crate::error::Result;
use crate::fsio;
use crate::layout::{CLUSTER_DIR, JSON_SUFFIX, OBJECTS_DIR, ObjectKey};
use crate::store::Datastore;

/// Every object of one revision, the modelled kinds converted.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The revision these objects were committed at.
    pub revision: u64,
    /// `v1` Nodes, sorted by name.
    pub nodes: Vec<weft_model::Node>,
    /// `v1` Namespaces, sorted by name.
    pub namespaces: Vec<weft_model::Namespace>,
    /// `v1` Pods, sorted by namespace then name.
    pub pods: Vec<weft_model::Pod>,
    /// `networking.k8s.io/v1` NetworkPolicies, validated, sorted by
    /// namespace then name. One that fails validation is in
    /// [`Self::rejected`] and leaves every other policy in force.
    pub policies: Vec<weft_model::NetworkPolicy>,
    /// `v1` Services, validated, sorted by namespace then name. One that
    /// fails validation is in [`Self::rejected`] and is not proxied; every
    /// other Service is.
    pub services: Vec<weft_model::Service>,
    /// `discovery.k8s.io/v1` EndpointSlices, validated, sorted by namespace
    /// then name; a rejected one is in [`Self::rejected`].
    pub slices: Vec<weft_model::EndpointSlice>,
    /// Every other object (ConfigMap, CRDs, ...), raw, sorted by
    /// kind directory, namespace, name.
    pub others: Vec<Value>,
    /// Objects left out, as (`Kind/namespace/name` or the file's path when
    /// its content names no object, error): a bad object never disturbs
    /// the rest.
    pub rejected: Vec<(String, String)>,
}

impl Datastore {
    /// Reads every object under the shared lock, so that all of them and
    /// the revision belong to one committed transaction.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let _lock = fsio::lock(self.root(), false)?;
        let mut snap = Snapshot {
            revision: fsio::read_revision(self.root())?,
            ..Snapshot::default()
        };
        // Stray files where directories belong are skipped: they hold no
        // object, and must not fail every agent's snapshot.
        let dirs = |dir: &Path| -> Result<Vec<(String, PathBuf)>> {
            let mut entries = fsio::sorted_entries(dir)?;
            entries.retain(|(_, path)| path.is_dir());
            Ok(entries)
        };
        for (_, kind_dir) in dirs(&self.root().join(OBJECTS_DIR))? {
            for (ns_dir, dir) in dirs(&kind_dir)? {
                for (file, path) in fsio::sorted_entries(&dir)? {
                    let Some(name) = file.strip_suffix(JSON_SUFFIX) else {
                        continue;
                    };
                    if fsio::is_tmp(&file) {
                        continue;
                    }
                    let namespace = (ns_dir != CLUSTER_DIR).then_some(ns_dir.as_str());
                    snap.add(&path, namespace, name);
                }
            }
        }
        Ok(snap)
    }
}

impl Snapshot {
    /// Adds one stored file, or records why it cannot be used.
    fn add(&mut self, path: &Path, namespace: Option<&str>, name: &str) {
        let mut doc = match fsio::read_json(path) {
            Ok(Some(doc)) => doc,
            // Deleted since the directory was listed: impossible under the
            // lock, unless someone edits files by hand; skip it.
            Ok(None) => return,
            Err(e) => {
                self.reject(path.display().to_string(), e.to_string());
                return;
            }
        };
        let key = match documents::identify(0, &mut doc) {
            Ok(key) => key,
            Err(e) => {
                let reason = e.to_string();
                let reason = reason.strip_prefix("document 0: ").unwrap_or(&reason);
                self.reject(path.display().to_string(), reason.to_owned());
                return;
            }
        };
        // A file put by hand where its content does not belong would
        // shadow or duplicate the real object.
        if let Err(reason) = check_location(&key, path, namespace, name) {
            self.reject(key.to_string(), reason);
            return;
        }
        let converted = match documents::model_kind(&doc) {
            Some(ModelKind::Node) => {
                documents::convert::<core::Node, _>(&doc).map(|n| self.nodes.push(n))
            }
            Some(ModelKind::Namespace) => {
                documents::convert::<core::Namespace, _>(&doc).map(|n| self.namespaces.push(n))
            }
            Some(ModelKind::Pod) => {
                documents::convert::<core::Pod, _>(&doc).map(|p| self.pods.push(p))
            }
            Some(ModelKind::NetworkPolicy) => {
                documents::network_policy(&doc).map(|p| self.policies.push(p))
            }
            Some(ModelKind::Service) => {
                documents::convert::<core::Service, _>(&doc).map(|s| self.services.push(s))
            }
            Some(ModelKind::EndpointSlice) => {
                documents::convert::<discovery::EndpointSlice, _>(&doc).map(|s| self.slices.push(s))
            }
            None => {
                self.others.push(doc);
                Ok(())
            }
        };
        if let Err(reason) = converted {
            self.reject(key.to_string(), reason);
        }
    }

    fn reject(&mut self, what: String, reason: String) {
        tracing::warn!(object = %what, %reason, "datastore object left out of the snapshot");
        self.rejected.push((what, reason));
    }
}

/// Checks that an object's file is the one its identity maps to.
fn check_location(
    key: &ObjectKey,
    path: &Path,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), String> {
    let expected = key.rel_path();
    if key.name == name && key.namespace.as_deref() == namespace && path.ends_with(&expected) {
        Ok(())
    } else {
        Err(format!(
            "stored at {} but belongs at {}",
            path.display(),
            expected.display()
        ))
    }
}
