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
use weft_netlink::{Batch, Handle, Neighbour, Netns, Route, RouteScope, format_mac, sysctl_set};

use super::errors::{ipam, kernel};
use super::naming::{GATEWAY_V4, HOST_MAC, gateway_for, host_alias, host_ifname, pod_mac};
use super::node::{self, NodeView};
use super::timing::Timing;
use super::veth::{self, Pair};
use crate::wire::config::NetConf;
use crate::wire::env::Env;
use crate::wire::error::{CniError, INVALID_ENVIRONMENT, INVALID_NETNS, UNSUPPORTED_FIELD};
use crate::wire::result::{CniResult, Interface, IpConfig, Route as ResultRoute};

/// Runs ADD. On failure, removes what this invocation created (the veth pair,
/// and the reservation when it was new) before returning the error.
pub fn add(env: &Env, conf: &NetConf) -> Result<CniResult, CniError> {
    let mut timing = Timing::from_env();
    let outcome = attach(env, conf, &mut timing);
    timing.report("ADD");
    outcome
}

fn attach(env: &Env, conf: &NetConf, timing: &mut Timing) -> Result<CniResult, CniError> {
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
    let attachment = Attachment {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    timing.mark("prepare");
    let store = Store::open(&node::data_dir(conf), &conf.name).map_err(ipam)?;
    // The address is decided first (an exhausted pool creates nothing);
    // the interface is then built while the reservation's write + fsync +
    // rename runs on a second thread, and the result is returned only once
    // both are done: the two waits overlap instead of adding up.
    let mut worked = false;
    let outcome = store.allocate_with(&attachment, &pool, |alloc| {
        worked = true;
        let built = veth::create(env, node.mtu, &pod_ns).and_then(|pair| {
            let pod = ready_node(&node, &pod_ns)?;
            configure(env, conf, pod, pair, alloc)
        });
        timing.mark("interface");
        built
    });
    timing.mark("committed");
    let host_if = host_ifname(&env.container_id, &env.ifname);
    let (mut err, created) = match outcome {
        Ok((alloc, Ok(()))) => {
            let mac = pod_mac(&env.container_id, &env.ifname);
            return Ok(result(env, conf, &node, &alloc, &host_if, &mac));
        }
        Ok((alloc, Err(e))) => (e, alloc.created),
        // The reservation was never written: nothing to release.
        Err(e) => (ipam(e), false),
    };
    // Whatever this invocation created goes: the pair (absent is fine),
    // and the reservation when it was new.
    if worked {
        if let Err(e) = veth::remove_host_veth(&host_if) {
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

/// Sets what the node needs for a pod and opens a socket inside the
/// pod's namespace. The IP forwarding of each family the pod gets an
/// address of (the pool has one per family) is written only when not yet
/// set: on a running node that is one read.
fn ready_node(node: &NodeView, pod_ns: &Netns) -> Result<Handle, CniError> {
    let families = |v4: bool| node.pod_cidrs.iter().any(|c| c.addr().is_ipv4() == v4);
    for (v4, key) in [
        (true, "net/ipv4/ip_forward"),
        (false, "net/ipv6/conf/all/forwarding"),
    ] {
        if families(v4) {
            sysctl_set(key, "1").map_err(|e| kernel("enable forwarding on the node", e))?;
        }
    }
    veth::pod_handle(pod_ns)
}

/// Gives the created pair its addresses, neighbours and routes; `pod` is a
/// socket inside the pod's namespace.
fn configure(
    env: &Env,
    conf: &NetConf,
    mut pod: Handle,
    pair: Pair,
    alloc: &Allocation,
) -> Result<(), CniError> {
    let cid = &env.container_id;
    let ifname = &env.ifname;
    let host_if = host_ifname(cid, ifname);
    let mac = pod_mac(cid, ifname);
    let Pair {
        mut host,
        host_index,
        pod_index,
    } = pair;

    // One batch per namespace, applied in order by the kernel: addresses and
    // neighbours, the links up, then routes (IPv4 refuses a route through a
    // link that is down). The host end gets no IPv6 link-local address: it
    // never speaks NDP (both sides hold static neighbours) and forwards
    // without one, and skipping it saves the kernel the address, its
    // duplicate address detection and the MLD join on every ADD.
    let mut in_pod = Batch::new();
    let mut on_host = Batch::new();
    on_host
        .set_alias(host_index, &host_alias(&conf.name, cid, ifname))
        .set_no_link_local(host_index)
        .set_up(host_index);
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
    Ok(())
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
