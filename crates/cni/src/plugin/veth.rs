//! The pod's veth pair: created with its pod end born inside the pod's
//! netns, replaced on a repeated ADD of the same attachment, removed when an
//! ADD fails.
//!
//! Creation depends only on the invocation (names and MACs derive from the
//! container ID and interface name) and the node's MTU, not on the address.

use weft_netlink::{Handle, Link, Netns, VethEnd};

use super::errors::kernel;
use super::naming::{HOST_MAC, host_ifname, pod_mac};
use crate::wire::env::Env;
use crate::wire::error::{CniError, KERNEL_FAILURE};

/// A created pair, seen from the node's namespace.
#[derive(Debug)]
pub struct Pair {
    /// The socket in the node's namespace that created it, reused for the
    /// node-side requests that follow.
    pub host: Handle,
    /// The host end's ifindex in the node's namespace.
    pub host_index: u32,
    /// The pod end's ifindex inside the pod's namespace.
    pub pod_index: u32,
}

/// Creates the pair for the attachment `env` names, both ends down: the
/// host end comes up in the node-side batch, after its IPv6 address
/// generation is switched off (it needs no fe80:: address; see `add`), and
/// the kernel refuses to open the pod end before the pair is joined.
///
/// Creates first and looks only when a name is taken, so the common case is
/// one round trip: the kernel echoes the host end with both indexes.
pub fn create(env: &Env, mtu: u32, pod_ns: &Netns) -> Result<Pair, CniError> {
    let cid = &env.container_id;
    let ifname = &env.ifname;
    let host_if = host_ifname(cid, ifname);
    // The host alias is set in the node-side batch afterwards (one round
    // trip fewer than at creation, where the kernel ignores it anyway).
    let host_end = VethEnd {
        name: host_if.clone(),
        mac: HOST_MAC,
        mtu,
        alias: None,
    };
    let pod_end = VethEnd {
        name: ifname.clone(),
        mac: pod_mac(cid, ifname),
        mtu,
        alias: None,
    };
    let mut host = Handle::new().map_err(|e| kernel("open netlink", e))?;
    let created = match host.create_veth_echo(&host_end, &pod_end, pod_ns, false) {
        Err(e) if e.is_exists() => {
            replace_previous(env, &mut host, &host_if, pod_ns)?;
            host.create_veth_echo(&host_end, &pod_end, pod_ns, false)
                .map_err(|e| kernel("create veth pair", e))?
        }
        other => other.map_err(|e| kernel("create veth pair", e))?,
    };
    let (host_index, pod_index) = match created.and_then(|l| Some((l.index, l.peer_index?))) {
        Some(indexes) => indexes,
        // A kernel that does not echo RTM_NEWLINK (before 6.3): look up.
        None => {
            let mut pod = pod_handle(pod_ns)?;
            (
                link_index(&mut host, &host_if)?,
                link_index(&mut pod, ifname)?,
            )
        }
    };
    Ok(Pair {
        host,
        host_index,
        pod_index,
    })
}

/// A name was taken. When it is our own pair from a previous ADD of this
/// attachment, deletes it (the address stays: the reservation is reused);
/// when the pod's interface name belongs to something else, fails.
fn replace_previous(
    env: &Env,
    host: &mut Handle,
    host_if: &str,
    pod_ns: &Netns,
) -> Result<(), CniError> {
    let ifname = &env.ifname;
    let mut pod = pod_handle(pod_ns)?;
    if pod
        .link(ifname)
        .map_err(|e| kernel("look up pod interface", e))?
        .is_some_and(|l| l.peer_index.is_none() || !host_owns(host, host_if, &l))
    {
        return Err(CniError::new(
            KERNEL_FAILURE,
            format!(
                "interface {ifname} already exists in {}",
                pod_ns.path().display()
            ),
        ));
    }
    if let Some(old) = host
        .link(host_if)
        .map_err(|e| kernel("look up host veth", e))?
    {
        delete_ignoring_absent(host, old.index)
            .map_err(|e| kernel("delete previous host veth", e))?;
    }
    Ok(())
}

/// A socket inside the pod's namespace.
pub fn pod_handle(pod_ns: &Netns) -> Result<Handle, CniError> {
    Handle::in_netns(pod_ns).map_err(|e| kernel("open netlink in the pod netns", e))
}

/// The index of a link that this invocation just created.
fn link_index(handle: &mut Handle, name: &str) -> Result<u32, CniError> {
    handle
        .link(name)
        .map_err(|e| kernel(&format!("look up {name}"), e))?
        .map(|l| l.index)
        .ok_or_else(|| CniError::new(KERNEL_FAILURE, format!("{name} vanished after creation")))
}

/// Whether the pod interface `pod_link` is the peer of our host veth
/// `host_if` (a previous ADD of this attachment).
fn host_owns(host: &mut Handle, host_if: &str, pod_link: &Link) -> bool {
    match host.link(host_if) {
        Ok(Some(h)) => pod_link.peer_index == Some(h.index) && h.peer_index == Some(pod_link.index),
        _ => false,
    }
}

fn delete_ignoring_absent(handle: &mut Handle, index: u32) -> weft_netlink::Result<()> {
    match handle.delete_link(index) {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Deletes the host veth by name (its pod end goes with it); absent is fine.
pub fn remove_host_veth(name: &str) -> Result<bool, CniError> {
    let mut host = Handle::new().map_err(|e| kernel("open netlink", e))?;
    match host
        .link(name)
        .map_err(|e| kernel("look up host veth", e))?
    {
        Some(link) => {
            delete_ignoring_absent(&mut host, link.index)
                .map_err(|e| kernel("delete host veth", e))?;
            Ok(true)
        }
        None => Ok(false),
    }
}
