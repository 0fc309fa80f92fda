//! The crate's error type: every variant names the operation that failed.

/// What `weft_agent` returns.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a reconcile, an observation or a sweep failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request failed; its message already names the operation
    /// (e.g. `replace route 10.244.2.0/24 via 10.244.2.1 dev 5 onlink`).
    #[error(transparent)]
    Netlink(#[from] weft_netlink::Error),
    /// An external command (`nft`, `ip`, `bridge`) could not be run, failed,
    /// or printed something that could not be understood.
    #[error("{op}: {detail}")]
    Command {
        /// What was being done, e.g. `apply nftables table inet weft`.
        op: String,
        /// The command's stderr, or why its output was refused.
        detail: String,
    },
    /// The kernel holds something under one of weft's names that weft did
    /// not create and will not delete (e.g. a `weft.vxlan` that is no VXLAN
    /// device).
    #[error("{op}: {detail}")]
    Conflict {
        /// What was being done.
        op: String,
        /// What is in the way.
        detail: String,
    },
    /// The inputs cannot describe a working node (no address for this node,
    /// no underlay interface holding it, a name over 15 bytes).
    #[error("{0}")]
    Config(String),
    /// The IPAM store failed during a sweep.
    #[error("sweep IPAM reservations: {0}")]
    Ipam(#[from] weft_ipam::Error),
}

impl Error {
    /// Whether the failure is ENOENT/ESRCH/ENODEV-like: deleting something
    /// already gone is treated as done.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Netlink(e) if e.is_not_found())
    }
}
