//! The file datastore: Kubernetes manifests in a directory, one object per
//! file, with a revision and a watch.
//!
//! The lab and single-host use need no API server: the cluster lives in a
//! directory that `weftctl` and the lab write and every node's `weftd`
//! reads, each a separate process.
//!
//! ```text
//! <root>/lock                                    flock: exclusive for writers, shared for readers
//! <root>/revision                                last committed transaction (decimal u64)
//! <root>/objects/<kinds>/<namespace|_cluster>/<name>.json
//! <root>/status/<node>.json                      agents' reports, outside the revision
//! ```
//!
//! A write transaction ([`Datastore::apply`], [`Datastore::delete`],
//! [`Datastore::update`]) holds the exclusive lock, replaces object files
//! atomically (temporary file, fsync, rename), stamps them with the new
//! revision as `metadata.resourceVersion`, and ends by replacing the
//! revision file: that rename is what a [`Watcher`] waits for. Readers of
//! several files ([`Datastore::snapshot`], [`Datastore::list`]) take the
//! lock shared and so see exactly one committed revision.

mod documents;
mod error;
mod fsio;
mod layout;
mod snapshot;
mod store;
mod watch;

pub use error::{Error, Result};
pub use layout::{DEFAULT_NAMESPACE, ObjectKey, is_cluster_scoped};
pub use snapshot::Snapshot;
pub use store::Datastore;
pub use watch::Watcher;

/// Parses manifest text (multi-document YAML, or JSON) into documents,
/// `List`s flattened, exactly as [`Datastore::apply_text`] reads it: for
/// writers that fill in fields (a Service's cluster IP) before applying.
pub fn parse_manifest(text: &str) -> Result<Vec<serde_json::Value>> {
    documents::parse_text(text).map(documents::flatten)
}
