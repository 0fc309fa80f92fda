//! Services on this node: compile the node's proxy table
//! (`weft_proxy::Compiler`, which recompiles only the Services whose inputs
//! changed and hands out the change), bring the kernel's table `inet weft-proxy` to it
//! as a delta whenever possible ([`crate::stamped`], as for the policy
//! table), and clear stale UDP conntrack entries.
//!
//! Stale UDP: conntrack keeps a UDP flow's DNAT for as long as packets keep
//! coming, so a client that sends to a Service every few seconds would keep
//! talking to an endpoint after it left the Service (a long-standing
//! kube-proxy bug class). After each table change the agent compares, per
//! UDP front (a Service address and port, or a NodePort), the endpoints of
//! the previous pass with the current ones and deletes the conntrack entries
//! whose reply comes from an endpoint that left ([`UdpFlush`]). A deletion
//! that fails is retried on the next pass unless the endpoint came back.
//! A restarted agent has no previous pass: on its first pass, and on every
//! full load of the table, it reads the UDP entries of the conntrack table
//! instead and deletes those DNATed to an address that is not an endpoint
//! of their front any more ([`sweep`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tracing::{info, instrument, warn};
use weft_model::{EndpointSlice, IpFamily, Node, Protocol, Service};
use weft_netlink::CtEntry;
use weft_nft::Stats;
use weft_proxy::{Compiler, ProxyNode, TABLE};

use crate::error::Result;
use crate::kernel::Kernel;
use crate::stamped::{ChangedTable, TableAction, TableIo};

/// Where UDP clients reach a Service: the flows to clear are found by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UdpFront {
    /// A cluster, external or load-balancer IP and the Service port.
    Ip(IpAddr, u16),
    /// A NodePort of one family, on any of the node's addresses.
    NodePort(IpFamily, u16),
}

/// One conntrack deletion: the UDP flows to `front` whose replies come from
/// `endpoint` (`conntrack -D -p udp --orig-dst <ip> --orig-port-dst <port>
/// --reply-src <endpoint>`, or `--orig-port-dst <nodePort>` alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UdpFlush {
    /// Where the clients sent to.
    pub front: UdpFront,
    /// The endpoint that left.
    pub endpoint: IpAddr,
}

/// The outcome of one Service pass, for logs and the agent's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceReport {
    /// What was applied to the table.
    pub action: TableAction,
    /// Services in the model (all namespaces, proxied or not).
    pub services: usize,
    /// Services compiled anew in this pass (new or changed inputs).
    pub recompiled: usize,
    /// Stale UDP conntrack deletions run in this pass.
    pub flushed: usize,
    /// The size of the desired table.
    pub stats: Stats,
}

/// The proxy table's incremental compiler, what this agent last loaded
/// into the kernel and the UDP endpoints it had then, kept across passes.
#[derive(Debug, Default)]
pub struct ServiceState {
    compiler: Compiler,
    table: ChangedTable,
    /// UDP endpoints per front as of the last applied table; `None` before
    /// the first pass (a restarted agent has no history: entries that went
    /// stale while it was down are not known).
    udp: Option<BTreeMap<UdpFront, BTreeSet<IpAddr>>>,
    /// Deletions that failed, retried on the next pass.
    pending: BTreeSet<UdpFlush>,
    /// A sweep of the conntrack table failed: run it again next pass.
    sweep_due: bool,
}

impl ServiceState {
    /// Nothing applied yet: the first pass adopts an equal table.
    pub fn new() -> ServiceState {
        ServiceState::default()
    }
}

/// One Service pass: compiles the proxy table of `node` from every Service
/// and EndpointSlice, applies it through `state`, then deletes the conntrack
/// entries of UDP endpoints that left their Service. `cluster_cidrs` are the
/// cluster's pod CIDRs (empty when unknown: the node's own count).
#[instrument(skip_all, fields(node = %node.name))]
pub fn reconcile_services<K: Kernel>(
    kernel: &mut K,
    state: &mut ServiceState,
    services: &[Service],
    slices: &[EndpointSlice],
    node: &Node,
    cluster_cidrs: &[IpNet],
) -> Result<ServiceReport> {
    let proxy_node = ProxyNode {
        name: node.name.clone(),
        node_ips: node.addresses.clone(),
        pod_cidrs: node.pod_cidrs.clone(),
        cluster_cidrs: cluster_cidrs.to_vec(),
    };
    // Only the Services whose inputs changed are compiled again; the
    // change comes out of the compiler, no walk over the whole table.
    let update = state.compiler.update(services, slices, &proxy_node);
    let ruleset = state.compiler.ruleset();
    let stats = ruleset.stats();
    let io = TableIo {
        hash: K::proxy_hash,
        apply: K::proxy_apply,
    };
    let action = state.table.apply(
        kernel,
        &io,
        K::proxy_commit,
        ruleset,
        &update.change,
        state.compiler.hash(),
    )?;

    // Only once the table sends new flows elsewhere: a flow cleared before
    // would be re-created to the old endpoint by the client's next packet.
    let udp = udp_endpoints(services, slices);
    // No history to compare with (a restarted agent) or the table loaded
    // whole: flows that went stale while nobody watched are found in the
    // conntrack table itself.
    let mut swept = 0;
    if state.udp.is_none() || action == TableAction::Full || state.sweep_due {
        match sweep(kernel, &udp, &node.addresses) {
            Ok(n) => {
                swept = n;
                state.sweep_due = false;
            }
            Err(e) => {
                warn!(error = %e, "sweeping stale UDP flows failed; retrying next pass");
                state.sweep_due = true;
            }
        }
    }
    let mut flushes = std::mem::take(&mut state.pending);
    if let Some(old) = &state.udp {
        flushes.extend(stale(old, &udp));
    }
    // An endpoint that came back is no longer stale.
    flushes.retain(|f| {
        !udp.get(&f.front)
            .is_some_and(|eps| eps.contains(&f.endpoint))
    });
    let flushed = flushes.len() + swept;
    for flush in flushes {
        if let Err(e) = kernel.conntrack_delete(&flush) {
            warn!(?flush, error = %e, "clearing stale UDP flows failed; retrying next pass");
            state.pending.insert(flush);
        }
    }
    state.udp = Some(udp);

    let report = ServiceReport {
        action,
        services: services.len(),
        recompiled: update.recompiled,
        flushed,
        stats,
    };
    if action != TableAction::Unchanged || flushed > 0 {
        info!(table = TABLE, ?report, "proxy table applied");
    }
    Ok(report)
}

/// The endpoints each UDP front may send to: per Service port of protocol
/// UDP and family, the first address of every ready or serving endpoint of
/// the Service's slices of that family. Over-inclusive on purpose (a
/// serving endpoint the proxy skips while ready ones exist): clearing flows
/// that do not exist is harmless, missing one is the bug.
pub fn udp_endpoints(
    services: &[Service],
    slices: &[EndpointSlice],
) -> BTreeMap<UdpFront, BTreeSet<IpAddr>> {
    let mut out: BTreeMap<UdpFront, BTreeSet<IpAddr>> = BTreeMap::new();
    for service in services.iter().filter(|s| s.is_proxied()) {
        let ports: Vec<_> = service
            .ports
            .iter()
            .filter(|p| p.protocol == Protocol::Udp)
            .collect();
        if ports.is_empty() {
            continue;
        }
        let own = slices.iter().filter(|s| {
            s.namespace == service.namespace && s.service.as_deref() == Some(&service.name)
        });
        let mut endpoints: BTreeMap<IpFamily, BTreeSet<IpAddr>> = BTreeMap::new();
        for slice in own {
            let Some(family) = slice.family() else {
                continue;
            };
            let ips = slice
                .endpoints
                .iter()
                .filter(|e| e.conditions.ready || e.conditions.serving)
                .filter_map(|e| e.addresses.first().copied())
                .filter(|ip| IpFamily::of(*ip) == family);
            endpoints.entry(family).or_default().extend(ips);
        }
        let addresses = service
            .cluster_ips
            .iter()
            .chain(&service.external_ips)
            .chain(&service.load_balancer_ips);
        for port in ports {
            for ip in addresses.clone() {
                let eps = endpoints
                    .get(&IpFamily::of(*ip))
                    .cloned()
                    .unwrap_or_default();
                out.entry(UdpFront::Ip(*ip, port.port))
                    .or_default()
                    .extend(eps);
            }
            if let Some(node_port) = port.node_port.filter(|_| service.has_node_ports()) {
                for family in &service.ip_families {
                    let eps = endpoints.get(family).cloned().unwrap_or_default();
                    out.entry(UdpFront::NodePort(*family, node_port))
                        .or_default()
                        .extend(eps);
                }
            }
        }
    }
    out
}

/// The deletions that take `old` to `new`: every endpoint of a front that
/// is not an endpoint of that front any more (a front gone entirely, its
/// Service deleted, loses all of them).
pub fn stale(
    old: &BTreeMap<UdpFront, BTreeSet<IpAddr>>,
    new: &BTreeMap<UdpFront, BTreeSet<IpAddr>>,
) -> BTreeSet<UdpFlush> {
    let mut out = BTreeSet::new();
    for (front, endpoints) in old {
        let now = new.get(front);
        for endpoint in endpoints {
            if !now.is_some_and(|n| n.contains(endpoint)) {
                out.insert(UdpFlush {
                    front: *front,
                    endpoint: *endpoint,
                });
            }
        }
    }
    out
}

/// Deletes the UDP conntrack entries whose original destination is a UDP
/// front of `udp` (a Service address and port, or a NodePort on one of
/// `node_ips`) and whose reply comes from an address that is not one of
/// the front's endpoints: DNATed flows to endpoints that left while no
/// agent compared passes. Returns how many it deleted. One dump per
/// family with UDP fronts (filtered to UDP by the kernel), a deletion per
/// stale entry; nothing at all without UDP fronts.
pub fn sweep<K: Kernel>(
    kernel: &mut K,
    udp: &BTreeMap<UdpFront, BTreeSet<IpAddr>>,
    node_ips: &[IpAddr],
) -> Result<usize> {
    let family_of = |front: &UdpFront| match front {
        UdpFront::Ip(ip, _) => IpFamily::of(*ip),
        UdpFront::NodePort(f, _) => *f,
    };
    let families: BTreeSet<IpFamily> = udp.keys().map(family_of).collect();
    let mut deleted = 0;
    for family in families {
        for entry in kernel.conntrack_udp(family == IpFamily::V6)? {
            if stale_entry(&entry, udp, node_ips) {
                kernel.conntrack_remove(&entry)?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// Whether `entry` is a flow to a UDP front whose DNAT target is not one
/// of the front's endpoints. A flow that was not DNATed (its reply comes
/// from where the client sent) is not the proxy's.
pub fn stale_entry(
    entry: &CtEntry,
    udp: &BTreeMap<UdpFront, BTreeSet<IpAddr>>,
    node_ips: &[IpAddr],
) -> bool {
    let (dst, port) = (entry.orig.dst, entry.orig.dport);
    let endpoints = udp.get(&UdpFront::Ip(dst, port)).or_else(|| {
        node_ips
            .contains(&dst)
            .then(|| udp.get(&UdpFront::NodePort(IpFamily::of(dst), port)))
            .flatten()
    });
    let Some(endpoints) = endpoints else {
        return false;
    };
    let dnat = entry.reply.src != dst || entry.reply.sport != port;
    dnat && !endpoints.contains(&entry.reply.src)
}

/// The `conntrack` arguments that delete the flows of `flush`.
pub fn conntrack_args(flush: &UdpFlush) -> Vec<String> {
    let family = |f: IpFamily| match f {
        IpFamily::V4 => "ipv4",
        IpFamily::V6 => "ipv6",
    };
    let mut args: Vec<String> = vec!["-D".into(), "-f".into()];
    match flush.front {
        UdpFront::Ip(ip, port) => {
            args.push(family(IpFamily::of(ip)).into());
            args.extend([
                "-p".into(),
                "udp".into(),
                "--orig-dst".into(),
                ip.to_string(),
            ]);
            args.extend(["--orig-port-dst".into(), port.to_string()]);
        }
        UdpFront::NodePort(f, port) => {
            args.push(family(f).into());
            args.extend(["-p".into(), "udp".into()]);
            args.extend(["--orig-port-dst".into(), port.to_string()]);
        }
    }
    args.extend(["--reply-src".into(), flush.endpoint.to_string()]);
    args
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
