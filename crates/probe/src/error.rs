//! The echo server's errors (a probe reports its failures in its result).

use std::io;

/// What went wrong, naming the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// The operation, e.g. `bind TCP [::]:80`.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The caller's input cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `op`.
    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            op: op.into(),
            source,
        }
    }
}
