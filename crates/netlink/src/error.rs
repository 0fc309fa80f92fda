//! The crate's error type: which operation failed, and the errno the kernel
//! gave, so callers can turn EEXIST and ENOENT into idempotent outcomes.

use std::io;

/// Result of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Why an operation failed. Every variant names the operation, so a CNI
/// error message says what was being done, not only the errno.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused: a netlink NLMSG_ERROR, or a failed syscall
    /// (open, setns, read or write under /proc/sys). When the kernel sent an
    /// extended-ack message it is appended to `op` in brackets, because it
    /// usually says which attribute was wrong.
    #[error("{op}: {source}")]
    Kernel {
        /// What was being done, e.g. `create veth wefta1b2 (peer eth0)`.
        op: String,
        /// The errno as an `io::Error`; `raw_os_error()` is always set for
        /// netlink errors.
        source: io::Error,
    },
    /// The kernel sent something this crate cannot decode, or a reply that
    /// breaks the netlink protocol (wrong type, missing DONE, truncation).
    #[error("{0}")]
    Protocol(String),
    /// A caller's argument was refused before anything was sent (an
    /// interface name that is too long, a sysctl outside `net.*`, a VNI
    /// over 24 bits), or names an object of another kind than asked for
    /// (a veth where a VXLAN device was looked up).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Builds a [`Error::Kernel`] from an errno value (positive, as in
    /// `libc::EEXIST`).
    pub fn kernel(op: impl Into<String>, errno: i32) -> Error {
        Error::Kernel {
            op: op.into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// Builds a [`Error::Kernel`] from an `io::Error` returned by a syscall.
    pub fn io(op: impl Into<String>, source: io::Error) -> Error {
        Error::Kernel {
            op: op.into(),
            source,
        }
    }

    /// The errno behind a kernel error (positive), if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. } => source.raw_os_error(),
            Error::Protocol(_) | Error::Invalid(_) => None,
        }
    }

    /// Whether the object already exists (EEXIST): a repeated ADD can treat
    /// this as success after checking that the existing object is its own.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// Whether the object (or the device or namespace it refers to) is gone:
    /// ENODEV, ENOENT, ESRCH, ENXIO, or EADDRNOTAVAIL (what deleting a
    /// missing address gives). Teardown treats this as done.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::ENXIO | libc::EADDRNOTAVAIL)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classification() {
        let e = Error::kernel("add route 10.0.0.1/32", libc::EEXIST);
        assert!(e.is_exists());
        assert!(!e.is_not_found());
        assert_eq!(e.errno(), Some(libc::EEXIST));
        for errno in [
            libc::ENODEV,
            libc::ENOENT,
            libc::ESRCH,
            libc::ENXIO,
            libc::EADDRNOTAVAIL,
        ] {
            assert!(Error::kernel("delete link 7", errno).is_not_found());
        }
        assert!(!Error::kernel("x", libc::EINVAL).is_not_found());
        assert_eq!(Error::Protocol("bad".into()).errno(), None);
    }

    #[test]
    fn display_names_the_operation() {
        let e = Error::kernel("delete link 7", libc::ENODEV);
        let s = e.to_string();
        assert!(s.starts_with("delete link 7: "), "{s}");
        assert!(s.contains("No such device"), "{s}");
    }
}
