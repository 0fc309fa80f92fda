//! The `kube` source: weft's view of a real kube-apiserver.
//!
//! weftd's loop is synchronous and level-triggered; this crate runs the
//! `kube` crate's watchers on a tokio runtime of its own (background
//! threads) and hands the loop what the `file` source hands it: a
//! [`weft_datastore::Snapshot`], plus a digest of the objects it was built
//! from so that `weftctl lab sync` can tell when an agent has caught up
//! with the API server.

mod client;
mod digest;
mod error;
mod mirror;
mod snapshot;
mod store;
mod transport;

pub use client::{client, cluster_digest};
pub use digest::{ObjectVersion, WATCHED_KINDS, digest};
pub use error::Error;
pub use mirror::{FIELD_MANAGER, Mirror};
pub use snapshot::KubeSnapshot;
