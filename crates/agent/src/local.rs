//! What the agent observes about its own node before deciding: the underlay
//! interface and the VTEP MAC.

use std::net::IpAddr;

use ipnet::IpNet;
use weft_model::Node;

use crate::config::LocalFacts;
use crate::desired::vtep_mac;
use crate::error::{Error, Result};
use crate::kernel::Kernel;

/// Finds the underlay: the interface holding `node`'s first address from
/// the model (its first InternalIP). Fails when the node has no address or
/// no interface holds it, since nothing can be routed then.
pub fn observe_local(kernel: &mut impl Kernel, node: &Node) -> Result<LocalFacts> {
    let ip = *node.addresses.first().ok_or_else(|| {
        Error::Config(format!(
            "find the underlay of node {}: it has no address in the model",
            node.name
        ))
    })?;
    for link in kernel.links()? {
        let addrs = kernel.addresses(link.index)?;
        if addrs.iter().any(|a| a.addr() == ip) {
            return Ok(LocalFacts {
                underlay_index: link.index,
                underlay_name: link.name,
                underlay_mtu: link.mtu,
                underlay_addrs: addrs.into_iter().filter(|a| !is_link_local(a)).collect(),
                vtep_mac: vtep_mac(&node.name),
            });
        }
    }
    Err(Error::Config(format!(
        "find the underlay of node {}: no interface holds {ip}",
        node.name
    )))
}

/// Whether `net`'s address is link-local (169.254/16, fe80::/10): such
/// addresses are the kernel's or the pods' gateway, never an underlay
/// segment or anything weft put on its device.
pub(crate) fn is_link_local(net: &IpNet) -> bool {
    match net.addr() {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}
