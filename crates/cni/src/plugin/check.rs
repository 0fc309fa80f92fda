//! CHECK: verifies the attachment that `prevResult` describes against the
//! kernel and the address store. Any missing piece fails with code 101 and
//! names what is missing.

use std::net::IpAddr;

use weft_ipam::{Attachment, Store};
use weft_netlink::{Family, Handle, Netns};

use super::add::{host_prefix, pod_routes};
use super::errors::{ipam, kernel};
use super::naming::{host_alias, host_ifname, pod_mac};
use super::node;
use crate::wire::config::NetConf;
use crate::wire::env::Env;
use crate::wire::error::{CHECK_FAILED, CniError, INVALID_CONFIG};

fn damaged(msg: String) -> CniError {
    CniError::new(CHECK_FAILED, msg)
}

/// Runs CHECK.
pub fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::new(INVALID_CONFIG, "CHECK needs prevResult"))?;
    let cid = &env.container_id;
    let ifname = &env.ifname;
    let netns_path = env.netns.as_deref().expect("validated for CHECK");

    // The addresses prevResult gives our pod interface.
    let pod_index = prev
        .interfaces
        .iter()
        .position(|i| i.name == *ifname && !i.sandbox.is_empty());
    let ips: Vec<IpAddr> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none() || ip.interface == pod_index)
        .map(|ip| ip.address.addr())
        .collect();
    if ips.is_empty() {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!("prevResult lists no address for {ifname}"),
        ));
    }

    let store = Store::open(&node::data_dir(conf), &conf.name).map_err(ipam)?;
    let attachment = Attachment {
        container_id: cid.clone(),
        ifname: ifname.clone(),
    };
    let reservation = store
        .get(&attachment)
        .map_err(ipam)?
        .ok_or_else(|| damaged(format!("no address is reserved for {cid}/{ifname}")))?;
    for ip in &ips {
        if !reservation.ips.contains(ip) {
            return Err(damaged(format!(
                "{ip} is not reserved for {cid}/{ifname} (reserved: {:?})",
                reservation.ips
            )));
        }
    }

    let host_if = host_ifname(cid, ifname);
    let mut host = Handle::new().map_err(|e| kernel("open netlink", e))?;
    let host_link = host
        .link(&host_if)
        .map_err(|e| kernel("look up host veth", e))?
        .ok_or_else(|| damaged(format!("host veth {host_if} is missing")))?;
    if !host_link.up {
        return Err(damaged(format!("host veth {host_if} is down")));
    }
    if host_link.alias.as_deref() != Some(host_alias(&conf.name, cid, ifname).as_str()) {
        return Err(damaged(format!(
            "host veth {host_if} does not belong to this attachment"
        )));
    }

    let pod_ns = Netns::open(netns_path)
        .map_err(|e| damaged(format!("netns {}: {e}", netns_path.display())))?;
    let mut pod =
        Handle::in_netns(&pod_ns).map_err(|e| kernel("open netlink in the pod netns", e))?;
    let pod_link = pod
        .link(ifname)
        .map_err(|e| kernel("look up pod interface", e))?
        .ok_or_else(|| damaged(format!("{ifname} is missing in {}", netns_path.display())))?;
    if pod_link.kind.as_deref() != Some("veth") || pod_link.peer_index != Some(host_link.index) {
        return Err(damaged(format!(
            "{ifname} is not the peer of host veth {host_if}"
        )));
    }
    if !pod_link.up {
        return Err(damaged(format!("{ifname} is down")));
    }
    if pod_link.mac != Some(pod_mac(cid, ifname)) {
        return Err(damaged(format!("{ifname} has an unexpected MAC address")));
    }

    let addrs = pod
        .addresses(pod_link.index)
        .map_err(|e| kernel("list pod addresses", e))?;
    let host_routes_v4 = host
        .routes(Family::V4)
        .map_err(|e| kernel("list host routes", e))?;
    let host_routes_v6 = host
        .routes(Family::V6)
        .map_err(|e| kernel("list host routes", e))?;
    let pod_routes_v4 = pod
        .routes(Family::V4)
        .map_err(|e| kernel("list pod routes", e))?;
    let pod_routes_v6 = pod
        .routes(Family::V6)
        .map_err(|e| kernel("list pod routes", e))?;
    for ip in &ips {
        let prefix = host_prefix(*ip);
        if !addrs.contains(&prefix) {
            return Err(damaged(format!("{ifname} lacks address {prefix}")));
        }
        let (host_routes, pod_have) = if ip.is_ipv4() {
            (&host_routes_v4, &pod_routes_v4)
        } else {
            (&host_routes_v6, &pod_routes_v6)
        };
        if !host_routes
            .iter()
            .any(|r| r.dst == prefix && r.oif == Some(host_link.index))
        {
            return Err(damaged(format!(
                "host route to {prefix} via {host_if} is missing"
            )));
        }
        for want in pod_routes(pod_link.index, *ip) {
            if !pod_have
                .iter()
                .any(|r| r.dst == want.dst && r.gateway == want.gateway && r.oif == want.oif)
            {
                return Err(damaged(format!("pod route {} is missing", want.dst)));
            }
        }
    }
    Ok(())
}
