//! DEL: idempotent and independent of the pod's netns. Deleting the host veth
//! removes the pair, its routes and neighbour entries; the reservation is
//! released whatever else fails.

use weft_ipam::{Attachment, Store};
use weft_netlink::Handle;

use super::errors::{ipam, kernel};
use super::naming::{host_alias, host_ifname};
use super::node;
use crate::wire::config::NetConf;
use crate::wire::env::Env;
use crate::wire::error::{CniError, KERNEL_FAILURE};

/// Runs DEL.
pub fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let mut failures = Vec::new();
    if let Err(e) = delete_veth(conf, env) {
        failures.push(e.to_string());
    }
    let attachment = Attachment {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    match Store::open(&node::data_dir(conf), &conf.name).and_then(|s| s.release(&attachment)) {
        Ok(_) => {}
        Err(e) => failures.push(ipam(e).to_string()),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(
            CniError::new(KERNEL_FAILURE, "DEL could not remove everything")
                .with_details(failures.join("; ")),
        )
    }
}

fn delete_veth(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    let name = host_ifname(&env.container_id, &env.ifname);
    let mut host = Handle::new().map_err(|e| kernel("open netlink", e))?;
    let Some(link) = host
        .link(&name)
        .map_err(|e| kernel("look up host veth", e))?
    else {
        return Ok(());
    };
    // Another weft network attaching the same (container, ifname) would own
    // a veth of the same name; leave it to that network's DEL.
    let ours = host_alias(&conf.name, &env.container_id, &env.ifname);
    if link.alias.as_deref().is_some_and(|a| a != ours) {
        return Ok(());
    }
    match host.delete_link(link.index) {
        Err(e) if !e.is_not_found() => Err(kernel(&format!("delete {name}"), e)),
        _ => Ok(()),
    }
}
