//! The one error type of this crate.

use std::path::PathBuf;

use ipnet::IpNet;

/// What `weft_ipam` returns.
pub type Result<T> = std::result::Result<T, Error>;

/// Why an IPAM operation failed.
///
/// Each variant carries what an operator needs to act on it: the failing
/// operation and path, the corrupt file, or the exhausted CIDRs. The I/O
/// cause is reachable through [`std::error::Error::source`], not repeated
/// in the message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on the store failed.
    #[error("{op} {}", path.display())]
    Io {
        /// The operation, e.g. `"rename"` or `"lock"`.
        op: String,
        /// The file or directory it acted on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file exists but cannot be trusted. It is never discarded
    /// silently: doing so would hand out addresses that pods still use.
    #[error("corrupt IPAM state file {}: {reason}", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// One address family of the pool has no free address left.
    #[error("no free address in {}", join(cidrs))]
    Exhausted {
        /// The CIDRs of the exhausted family.
        cidrs: Vec<IpNet>,
    },
    /// The pool's CIDRs cannot be used (host bits, too small, overlapping…).
    #[error("invalid pod CIDRs: {0}")]
    InvalidPool(String),
    /// The container ID, interface name or network name is not acceptable.
    #[error("invalid attachment: {0}")]
    InvalidAttachment(String),
}

impl Error {
    /// Builds an [`Error::Io`]; a helper because every call site names the
    /// operation and the path.
    pub(crate) fn io(op: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op: op.to_owned(),
            path: path.into(),
            source,
        }
    }
}

fn join(cidrs: &[IpNet]) -> String {
    cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
