//! Errors of the file datastore.

use std::io;
use std::path::PathBuf;

/// Result of datastore operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, naming the failing operation and the file it touched.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on a file or directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation, e.g. `"rename"`, `"lock"`, `"fsync"`.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file of the datastore holds something it never writes (a
    /// hand-edited or truncated file).
    #[error("corrupt {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Manifest text that is neither valid YAML nor valid JSON.
    #[error("parse manifest: {0}")]
    Parse(String),
    /// A document that is not a storable Kubernetes object; the whole call
    /// was rejected and nothing was written.
    #[error("document {index}: {reason}")]
    Invalid {
        /// Zero-based index of the document in the call (after `List`s
        /// were flattened).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A kind, namespace or name argument that cannot name a stored object.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        /// `"kind"`, `"namespace"`, `"name"` or `"node"`.
        what: &'static str,
        /// The argument as given.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// An update closure changed what the object is (kind, namespace or
    /// name) or left it invalid; nothing was written.
    #[error("update {key}: {reason}")]
    Update {
        /// `Kind/namespace/name` of the object being updated.
        key: String,
        /// What is wrong with the updated object.
        reason: String,
    },
    /// Serialising an object to JSON failed.
    #[error("encode {key}: {source}")]
    Encode {
        /// What was being encoded.
        key: String,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// The inotify watch could not be set up or read.
    #[error("watch {}: {op}: {source}", path.display())]
    Watch {
        /// The operation, e.g. `"inotify_init"`, `"add watch"`, `"read events"`.
        op: &'static str,
        /// The watched directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
