//! Mapping the libraries' errors to CNI error codes.

use crate::wire::error::{
    CniError, INVALID_CONFIG, INVALID_ENVIRONMENT, IO_FAILURE, KERNEL_FAILURE, POOL_EXHAUSTED,
};

/// A kernel operation failed.
pub fn kernel(what: &str, e: weft_netlink::Error) -> CniError {
    CniError::new(KERNEL_FAILURE, format!("{what}: {e}"))
}

/// An address-store operation failed.
pub fn ipam(e: weft_ipam::Error) -> CniError {
    use weft_ipam::Error as E;
    let code = match &e {
        E::Exhausted { .. } => POOL_EXHAUSTED,
        E::InvalidPool(_) => INVALID_CONFIG,
        E::InvalidAttachment(_) => INVALID_ENVIRONMENT,
        E::Io { .. } | E::Corrupt { .. } => IO_FAILURE,
    };
    CniError::new(code, e.to_string())
}
