//! ADD: the routed attachment of DESIGN.md §3.
//!
//! A veth pair whose pod end is created directly inside the pod's netns, the
//! pod's addresses as /32 and /128, a default route per family via a
//! link-local gateway that the host side answers through static neighbour
//! entries (no proxy ARP, no ARP/NDP round trip on the first packet), and a
//! host route per pod address.

use std::net::IpAddr;

use ipnet::IpNet;
use weft_ipam::{Allocation, Attachment, Pool, Store};
use weft_netlink::{
    Batch, Handle, Neighbour, Netns, Route, RouteScope, VethEnd, format_mac, sysctl_set,
};

use super::errors::{ipam, kernel};
use super::naming::{GATEWAY_V4, HOST_MAC, gateway_for, host_alias, host_ifname, pod_mac};
use super::node::{self, NodeView};
use crate::wire::config::NetConf;
use crate::wire::env::Env;
use crate::wire::error::{
    CniError, INVALID_ENVIRONMENT, INVALID_NETNS, KERNEL_FAILURE, UNSUPPORTED_FIELD,
};
use crate::wire::result::{CniResult, Interface, IpConfig, Route as ResultRoute};

/// Runs ADD. On failure, removes what this invocation created (the veth pair,
/// and the reservation when it was new) before returning the error.
pub fn add(env: &Env, conf: &NetConf) -> Result<CniResult, CniError> {
    if !conf.requested_ips.is_empty() {
        return Err(CniError::new(
            UNSUPPORTED_FIELD,
            format!(
                "ips: static addresses {:?} are not supported; weft allocates from the node's pod CIDRs",
                conf.requested_ips
            ),
        ));
    }
    let netns_path = env.netns.as_deref().expect("validated for ADD");
    let pod_ns = Netns::open(netns_path).map_err(|e| {
        CniError::new(
            INVALID_ENVIRONMENT,
            format!("CNI_NETNS: cannot open {}: {e}", netns_path.display()),
        )
    })?;
    let host_ns = Netns::current().map_err(|e| kernel("open own netns", e))?;
    if pod_ns
        .is_same_as(&host_ns)
        .map_err(|e| kernel("compare netns", e))?
    {
        return Err(CniError::new(
            INVALID_NETNS,
            format!(
                "CNI_NETNS {} is the plugin's own network namespace",
                netns_path.display()
            ),
        ));
    }
    let node = node::resolve(conf)?;
    let pool = Pool::new(node.pod_cidrs.clone()).map_err(ipam)?;
    let store = Store::open(&node::data_dir(conf), &conf.name).map_err(ipam)?;
    let attachment = Attachment {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    // The interface is built while the reservation's fsyncs run (the two
    // waits overlap); the result is returned only once both are done.
    let mut worked = false;
    let outcome = store.allocate_with(&attachment, &pool, |alloc| {
        worked = true;
        attach(env, conf, &node, &pod_ns, alloc)
    });
    let host_if = host_ifname(&env.container_id, &env.ifname);
    let (mut err, created) = match outcome {
        Ok((_, Ok(result))) => return Ok(result),
        Ok((alloc, Err(e))) => (e, alloc.created),
        // The reservation was never written: nothing to release.
        Err(e) => (ipam(e), false),
    };
    if worked {
        if let Err(e) = remove_host_veth(&host_if) {
            err.details = format!("{}; cleanup: {e}", err.details);
        }
    }
    if created {
        if let Err(e) = store.release(&attachment) {
            err.details = format!("{}; releasing the address: {e}", err.details);
        }
    }
    Err(err)
}

fn attach(
    env: &Env,
    conf: &NetConf,
    node: &NodeView,
    pod_ns: &Netns,
    alloc: &Allocation,
) -> Result<CniResult, CniError> {
    let cid = &env.container_id;
    let ifname = &env.ifname;
    let host_if = host_ifname(cid, ifname);
    let mac = pod_mac(cid, ifname);
    let mut host = Handle::new().map_err(|e| kernel("open netlink", e))?;
    let mut pod =
        Handle::in_netns(pod_ns).map_err(|e| kernel("open netlink in the pod netns", e))?;

    for ip in &alloc.ips {
        let key = if ip.is_ipv4() {
            "net/ipv4/ip_forward"
        } else {
            "net/ipv6/conf/all/forwarding"
        };
        sysctl_set(key, "1").map_err(|e| kernel("enable forwarding on the node", e))?;
    }
    // The alias goes in the host batch below (one round trip fewer than
    // setting it at creation, which the kernel ignores anyway).
    let host_end = VethEnd {
        name: host_if.clone(),
        mac: HOST_MAC,
        mtu: node.mtu,
        alias: None,
    };
    let pod_end = VethEnd {
        name: ifname.clone(),
        mac,
        mtu: node.mtu,
        alias: None,
    };
    // Create first and look only when a name is taken: the common case
    // costs no lookup round trips. The host end is created up, and the
    // kernel echoes it back with both ends' indexes.
    let created = match host.create_veth_echo(&host_end, &pod_end, pod_ns, true) {
        Err(e) if e.is_exists() => {
            if pod
                .link(ifname)
                .map_err(|e| kernel("look up pod interface", e))?
                .is_some_and(|l| l.peer_index.is_none() || !host_owns(&mut host, &host_if, &l))
            {
                return Err(CniError::new(
                    KERNEL_FAILURE,
                    format!(
                        "interface {ifname} already exists in {}",
                        env.netns
                            .as_deref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ),
                ));
            }
            // A repeated ADD of the same attachment replaces the previous
            // pair (the address stays: the reservation is reused).
            if let Some(old) = host
                .link(&host_if)
                .map_err(|e| kernel("look up host veth", e))?
            {
                delete_ignoring_absent(&mut host, old.index)
                    .map_err(|e| kernel("delete previous host veth", e))?;
            }
            host.create_veth_echo(&host_end, &pod_end, pod_ns, true)
                .map_err(|e| kernel("create veth pair", e))?
        }
        other => other.map_err(|e| kernel("create veth pair", e))?,
    };
    let (host_index, pod_index) = match created.and_then(|l| Some((l.index, l.peer_index?))) {
        Some(indexes) => indexes,
        // A kernel that does not echo RTM_NEWLINK (before 6.3): look up.
        None => (
            link_index(&mut host, &host_if)?,
            link_index(&mut pod, ifname)?,
        ),
    };

    // One batch per namespace, applied in order by the kernel: addresses and
    // neighbours, the pod's link up (the host end already is), then routes (IPv4 refuses a route through a
    // link that is down).
    let mut in_pod = Batch::new();
    let mut on_host = Batch::new();
    on_host.set_alias(host_index, &host_alias(&conf.name, cid, ifname));
    for ip in &alloc.ips {
        in_pod
            .add_address(pod_index, host_prefix(*ip), true)
            .add_neighbour(&Neighbour {
                index: pod_index,
                ip: gateway_for(*ip),
                mac: HOST_MAC,
                permanent: true,
            });
        on_host.add_neighbour(&Neighbour {
            index: host_index,
            ip: *ip,
            mac,
            permanent: true,
        });
    }
    in_pod.set_up(pod_index);
    for ip in &alloc.ips {
        for route in pod_routes(pod_index, *ip) {
            in_pod.add_route(&route);
        }
        on_host.replace_route(&Route {
            dst: host_prefix(*ip),
            oif: Some(host_index),
            scope: if ip.is_ipv4() {
                RouteScope::Link
            } else {
                RouteScope::Universe
            },
            ..Route::default()
        });
    }
    pod.apply(&in_pod)
        .map_err(|e| kernel(&format!("configure {ifname} in the pod"), e))?;
    host.apply(&on_host)
        .map_err(|e| kernel(&format!("configure {host_if} on the node"), e))?;

    Ok(result(env, conf, node, alloc, &host_if, &mac))
}

/// The routes inside the pod for one of its addresses.
pub fn pod_routes(index: u32, ip: IpAddr) -> Vec<Route> {
    let gw = gateway_for(ip);
    let mut routes = Vec::new();
    if ip.is_ipv4() {
        routes.push(Route {
            dst: IpNet::new(IpAddr::V4(GATEWAY_V4), 32).expect("valid"),
            oif: Some(index),
            scope: RouteScope::Link,
            ..Route::default()
        });
    }
    let any = if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    routes.push(Route {
        dst: any.parse().expect("valid"),
        gateway: Some(gw),
        oif: Some(index),
        ..Route::default()
    });
    routes
}

/// The /32 or /128 of an address.
pub fn host_prefix(ip: IpAddr) -> IpNet {
    IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("valid prefix")
}

fn result(
    env: &Env,
    conf: &NetConf,
    node: &NodeView,
    alloc: &Allocation,
    host_if: &str,
    mac: &[u8; 6],
) -> CniResult {
    // When chained after another plugin, append to its result.
    let mut r = conf.prev_result.clone().unwrap_or_default();
    let base = r.interfaces.len();
    r.interfaces.push(Interface {
        name: host_if.to_string(),
        mac: format_mac(&HOST_MAC),
        mtu: Some(node.mtu),
        ..Interface::default()
    });
    r.interfaces.push(Interface {
        name: env.ifname.clone(),
        mac: format_mac(mac),
        mtu: Some(node.mtu),
        sandbox: env
            .netns
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
            .to_string(),
        ..Interface::default()
    });
    for ip in &alloc.ips {
        r.ips.push(IpConfig {
            address: host_prefix(*ip),
            gateway: Some(gateway_for(*ip)),
            interface: Some(base + 1),
        });
        let any = if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        r.routes.push(ResultRoute {
            dst: any.parse().expect("valid"),
            gw: Some(gateway_for(*ip)),
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        });
    }
    if r.dns == Default::default() {
        r.dns = conf.dns.clone();
    }
    r
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
fn host_owns(host: &mut Handle, host_if: &str, pod_link: &weft_netlink::Link) -> bool {
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
