//! The lab's error type: every variant names the operation that failed.

use std::io;

/// What went wrong, and during which operation.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A system call or file operation failed.
    #[error("{op}: {source}")]
    Io {
        /// The operation, e.g. `create netns weftlab-node1`.
        op: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A netlink or namespace operation failed.
    #[error("{op}: {source}")]
    Netlink {
        /// The operation.
        op: String,
        /// The underlying error.
        source: weft_netlink::Error,
    },
    /// A command or plugin ran and reported failure.
    #[error("{op}: {detail}")]
    Failed {
        /// The operation.
        op: String,
        /// What the failing side said (stderr, CNI error, exit status).
        detail: String,
    },
    /// A JSON document could not be read or written.
    #[error("{op}: {source}")]
    Json {
        /// The operation.
        op: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The datastore refused an operation.
    #[error("{op}: {detail}")]
    Datastore {
        /// The operation.
        op: String,
        /// The datastore's error, rendered.
        detail: String,
    },
    /// A request that cannot be satisfied as given (unknown pod, bad flag
    /// value, a lab that is not up).
    #[error("{0}")]
    Invalid(String),
    /// Something did not happen within its deadline.
    #[error("{0}")]
    Timeout(String),
}

/// The lab's result type.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    /// A closure turning an `io::Error` into [`LabError::Io`] for `op`.
    pub fn io(op: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
        let op = op.into();
        move |source| LabError::Io { op, source }
    }

    /// A closure turning a netlink error into [`LabError::Netlink`] for `op`.
    pub fn netlink(op: impl Into<String>) -> impl FnOnce(weft_netlink::Error) -> LabError {
        let op = op.into();
        move |source| LabError::Netlink { op, source }
    }

    /// A closure turning a serde_json error into [`LabError::Json`] for `op`.
    pub fn json(op: impl Into<String>) -> impl FnOnce(serde_json::Error) -> LabError {
        let op = op.into();
        move |source| LabError::Json { op, source }
    }

    /// [`LabError::Failed`] for `op`.
    pub fn failed(op: impl Into<String>, detail: impl Into<String>) -> LabError {
        LabError::Failed {
            op: op.into(),
            detail: detail.into(),
        }
    }
}
