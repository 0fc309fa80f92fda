//! GC: releases every reservation, and removes every host veth of this
//! network, whose attachment the runtime no longer lists. An absent list means
//! "nothing to do" (the conservative reading of the spec); an empty list
//! releases everything.

use std::collections::HashSet;

use weft_ipam::Store;
use weft_netlink::Handle;

use super::errors::{ipam, kernel};
use super::naming::parse_host_alias;
use super::node;
use crate::wire::config::{NetConf, ValidAttachment};
use crate::wire::error::{CniError, KERNEL_FAILURE};

/// Runs GC.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let Some(valid) = &conf.valid_attachments else {
        return Ok(());
    };
    let is_valid = |cid: &str, ifname: &str| {
        valid.contains(&ValidAttachment {
            container_id: cid.to_string(),
            ifname: ifname.to_string(),
        })
    };
    let mut failures = Vec::new();
    let store = Store::open(&node::data_dir(conf), &conf.name).map_err(ipam)?;
    if let Err(e) = store.retain(|r| is_valid(&r.attachment.container_id, &r.attachment.ifname)) {
        failures.push(ipam(e).to_string());
    }
    if let Err(e) = remove_stale_veths(conf, &is_valid) {
        failures.push(e.to_string());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(
            CniError::new(KERNEL_FAILURE, "GC could not remove everything")
                .with_details(failures.join("; ")),
        )
    }
}

fn remove_stale_veths(
    conf: &NetConf,
    is_valid: &dyn Fn(&str, &str) -> bool,
) -> Result<(), CniError> {
    let mut host = Handle::new().map_err(|e| kernel("open netlink", e))?;
    let links = host.links().map_err(|e| kernel("list links", e))?;
    let mut failures = HashSet::new();
    for link in links {
        let Some((network, cid, ifname)) = link.alias.as_deref().and_then(parse_host_alias) else {
            continue;
        };
        if network != conf.name || is_valid(cid, ifname) {
            continue;
        }
        if let Err(e) = host.delete_link(link.index) {
            if !e.is_not_found() {
                failures.insert(format!("delete {}: {e}", link.name));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            KERNEL_FAILURE,
            failures.into_iter().collect::<Vec<_>>().join("; "),
        ))
    }
}
