//! The mirror's stores as a [`weft_datastore::Snapshot`]: the same model
//! objects, sort order and rejection rules as the `file` source, plus the
//! digest of the stored objects' resourceVersions.

use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use kube::ResourceExt;
use weft_datastore::{ObjectKey, Snapshot};

use crate::digest::{ObjectVersion, digest};

/// A snapshot of the mirror and the digest of exactly the objects it was
/// converted from (rejected ones included: they are in the cluster too).
#[derive(Clone, Debug)]
pub struct KubeSnapshot {
    /// The cluster converted into the model; `revision` is the mirror's
    /// local change counter.
    pub snapshot: Snapshot,
    /// [`crate::digest`] over the stored objects' resourceVersions.
    pub digest: String,
}

/// The stored objects of every watched kind at one moment.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    pub(crate) nodes: Vec<Arc<core::Node>>,
    pub(crate) namespaces: Vec<Arc<core::Namespace>>,
    pub(crate) pods: Vec<Arc<core::Pod>>,
    pub(crate) policies: Vec<Arc<networking::NetworkPolicy>>,
    pub(crate) services: Vec<Arc<core::Service>>,
    pub(crate) slices: Vec<Arc<discovery::EndpointSlice>>,
}

impl Objects {
    /// Converts every object into the model; one that does not convert is
    /// in `rejected` as (`Kind/namespace/name`, reason), as in the `file`
    /// source, and leaves the rest in force.
    pub(crate) fn snapshot(mut self, revision: u64) -> KubeSnapshot {
        let mut snap = Snapshot {
            revision,
            ..Snapshot::default()
        };
        let rejected = &mut snap.rejected;
        convert_all("Node", &mut self.nodes, &mut snap.nodes, rejected);
        convert_all(
            "Namespace",
            &mut self.namespaces,
            &mut snap.namespaces,
            rejected,
        );
        convert_all("Pod", &mut self.pods, &mut snap.pods, rejected);
        convert_all(
            "NetworkPolicy",
            &mut self.policies,
            &mut snap.policies,
            rejected,
        );
        convert_all("Service", &mut self.services, &mut snap.services, rejected);
        convert_all(
            "EndpointSlice",
            &mut self.slices,
            &mut snap.slices,
            rejected,
        );
        let digest = digest(
            versions("Node", &self.nodes)
                .chain(versions("Namespace", &self.namespaces))
                .chain(versions("Pod", &self.pods))
                .chain(versions("NetworkPolicy", &self.policies))
                .chain(versions("Service", &self.services))
                .chain(versions("EndpointSlice", &self.slices)),
        );
        KubeSnapshot {
            snapshot: snap,
            digest,
        }
    }
}

/// Sorts `objects` by namespace then name (the `file` source's order, so
/// both sources give the agent the same lists) and converts each.
fn convert_all<K, M>(
    kind: &str,
    objects: &mut [Arc<K>],
    out: &mut Vec<M>,
    rejected: &mut Vec<(String, String)>,
) where
    K: ResourceExt,
    for<'a> M: TryFrom<&'a K, Error = weft_model::Error>,
{
    objects.sort_by_cached_key(|o| (o.namespace(), o.name_any()));
    out.reserve(objects.len());
    for object in objects.iter() {
        match M::try_from(object) {
            Ok(m) => out.push(m),
            Err(e) => {
                let key = ObjectKey {
                    kind: kind.to_owned(),
                    namespace: object.namespace(),
                    name: object.name_any(),
                };
                rejected.push((key.to_string(), e.to_string()));
            }
        }
    }
}

fn versions<'a, K: ResourceExt>(
    kind: &'a str,
    objects: &'a [Arc<K>],
) -> impl Iterator<Item = ObjectVersion<'a>> + 'a {
    objects.iter().map(move |o| {
        let meta = o.meta();
        ObjectVersion {
            kind,
            namespace: meta.namespace.as_deref(),
            name: meta.name.as_deref().unwrap_or_default(),
            resource_version: meta.resource_version.as_deref().unwrap_or_default(),
        }
    })
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
