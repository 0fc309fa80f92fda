//! STATUS: exit 0 when an ADD could succeed now; code 50 when the node state
//! is missing or a family of the pool has no free address.

use weft_ipam::{Pool, Store};

use super::errors::ipam;
use super::node;
use crate::wire::config::NetConf;
use crate::wire::error::{CniError, NOT_AVAILABLE};

/// Runs STATUS.
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let unavailable = |e: CniError| CniError::new(NOT_AVAILABLE, e.msg).with_details(e.details);
    let node = node::resolve(conf).map_err(unavailable)?;
    let pool = Pool::new(node.pod_cidrs.clone()).map_err(|e| unavailable(ipam(e)))?;
    let store = Store::open(&node::data_dir(conf), &conf.name).map_err(|e| unavailable(ipam(e)))?;
    let free = store.free(&pool).map_err(|e| unavailable(ipam(e)))?;
    for v4 in [true, false] {
        let cidrs: Vec<_> = free
            .iter()
            .filter(|(c, _)| c.addr().is_ipv4() == v4)
            .collect();
        if !cidrs.is_empty() && cidrs.iter().all(|(_, n)| *n == 0) {
            let names: Vec<String> = cidrs.iter().map(|(c, _)| c.to_string()).collect();
            return Err(CniError::new(
                NOT_AVAILABLE,
                format!("no free address left in {}", names.join(", ")),
            ));
        }
    }
    Ok(())
}
