//! The mirror's stores as a [`weft_datastore::Snapshot`]: the same model
//! objects, sort order and rejection rules as the `file` source, plus the
//! digest of the stored objects' resourceVersions.

use std::sync::Arc;

use weft_datastore::{ObjectKey, Snapshot};
use weft_model as model;

use crate::digest::{ObjectVersion, WATCHED_KINDS, digest};
use crate::store::KindStore;

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

/// The stored objects of every watched kind, converted on arrival.
#[derive(Debug, Default)]
pub(crate) struct Stores {
    pub(crate) nodes: KindStore<model::Node>,
    pub(crate) namespaces: KindStore<model::Namespace>,
    pub(crate) pods: KindStore<model::Pod>,
    pub(crate) policies: KindStore<model::NetworkPolicy>,
    pub(crate) services: KindStore<model::Service>,
    pub(crate) slices: KindStore<model::EndpointSlice>,
}

/// The shared model objects of one moment, taken under the mirror's lock
/// (cheap: reference counts), copied into a [`Snapshot`] after it.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    revision: u64,
    digest: String,
    nodes: Vec<Arc<model::Node>>,
    namespaces: Vec<Arc<model::Namespace>>,
    pods: Vec<Arc<model::Pod>>,
    policies: Vec<Arc<model::NetworkPolicy>>,
    services: Vec<Arc<model::Service>>,
    slices: Vec<Arc<model::EndpointSlice>>,
    rejected: Vec<(String, String)>,
}

impl Stores {
    /// Every converted object in key order (the `file` source's), each
    /// that does not convert in `rejected` as (`Kind/namespace/name`,
    /// reason), as in the `file` source, and the digest over all of them.
    pub(crate) fn share(&self, revision: u64) -> Shared {
        let mut shared = Shared {
            revision,
            ..Shared::default()
        };
        let rejected = &mut shared.rejected;
        collect(WATCHED_KINDS[0], &self.nodes, &mut shared.nodes, rejected);
        collect(
            WATCHED_KINDS[1],
            &self.namespaces,
            &mut shared.namespaces,
            rejected,
        );
        collect(WATCHED_KINDS[2], &self.pods, &mut shared.pods, rejected);
        collect(
            WATCHED_KINDS[3],
            &self.policies,
            &mut shared.policies,
            rejected,
        );
        collect(
            WATCHED_KINDS[4],
            &self.services,
            &mut shared.services,
            rejected,
        );
        collect(WATCHED_KINDS[5], &self.slices, &mut shared.slices, rejected);
        shared.digest = digest(
            versions(WATCHED_KINDS[0], &self.nodes)
                .chain(versions(WATCHED_KINDS[1], &self.namespaces))
                .chain(versions(WATCHED_KINDS[2], &self.pods))
                .chain(versions(WATCHED_KINDS[3], &self.policies))
                .chain(versions(WATCHED_KINDS[4], &self.services))
                .chain(versions(WATCHED_KINDS[5], &self.slices)),
        );
        shared
    }
}

impl Shared {
    /// The snapshot the agent's loop takes: its model types are owned
    /// values, so this is where the objects are copied — once per pass,
    /// outside the lock, and freed with the snapshot.
    pub(crate) fn snapshot(self) -> KubeSnapshot {
        KubeSnapshot {
            snapshot: Snapshot {
                revision: self.revision,
                nodes: owned(self.nodes),
                namespaces: owned(self.namespaces),
                pods: owned(self.pods),
                policies: owned(self.policies),
                services: owned(self.services),
                slices: owned(self.slices),
                others: Vec::new(),
                rejected: self.rejected,
            },
            digest: self.digest,
        }
    }
}

/// Appends one kind's converted objects to `out` and its rejections to
/// `rejected`.
fn collect<M>(
    kind: &str,
    store: &KindStore<M>,
    out: &mut Vec<Arc<M>>,
    rejected: &mut Vec<(String, String)>,
) {
    out.reserve(store.len());
    for ((namespace, name), stored) in store.iter() {
        match &stored.model {
            Ok(m) => out.push(Arc::clone(m)),
            Err(reason) => {
                let key = ObjectKey {
                    kind: kind.to_owned(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                };
                rejected.push((key.to_string(), reason.to_string()));
            }
        }
    }
}

fn versions<'a, M>(
    kind: &'a str,
    store: &'a KindStore<M>,
) -> impl Iterator<Item = ObjectVersion<'a>> + 'a {
    store
        .iter()
        .map(move |((namespace, name), stored)| ObjectVersion {
            kind,
            namespace: namespace.as_deref(),
            name,
            resource_version: &stored.resource_version,
        })
}

/// The objects themselves; one no longer stored (replaced or deleted since
/// the lock was released) moves out instead of being copied.
fn owned<M: Clone>(shared: Vec<Arc<M>>) -> Vec<M> {
    shared
        .into_iter()
        .map(|m| Arc::try_unwrap(m).unwrap_or_else(|m| M::clone(&m)))
        .collect()
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
