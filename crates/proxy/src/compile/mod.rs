//! The Service compiler: Services, EndpointSlices and one node in, the
//! node's proxy table ([`Ruleset`]) out. Pure and deterministic; the agent
//! applies the result with [`crate::render_full`] or [`crate::render_delta`].
//!
//! The layout follows kube-proxy's nftables mode
//! (`pkg/proxy/nftables/proxier.go`), in one `inet` table for both families:
//!
//! - `nat_prerouting` and `nat_output` (dstnat; output catches the node's own
//!   connections) look up `daddr . l4proto . dport` in `service_ips4/6`
//!   (cluster, external and load-balancer IPs) and `l4proto . dport` of
//!   traffic to the node's addresses in `service_nodeports4/6`; each element
//!   is a `goto` to the Service port's chain. One lookup per packet,
//!   whatever the number of Services.
//! - A pick chain per Service port and family chooses an endpoint: one
//!   `numgen random` rule whose number is looked up in a shared map of
//!   backends (`backends4-tcp-XX`, see `backends`); a `ClientIP` Service
//!   keeps a cascade of `numgen random` rules after the client's affinity
//!   (one dynamic set and one chain per endpoint, the chain refreshing the
//!   set).
//! - Hairpin traffic (an endpoint reaching itself through its Service) is
//!   masqueraded in postrouting: `saddr . daddr` in `hairpin4/6`, whose
//!   elements are `ep . ep` for every endpoint that can live on this node
//!   (in its pod CIDRs, or one of its addresses).
//! - `filter_prerouting` and `filter_output` run before NAT and reject new
//!   connections to a Service port without endpoints (`no_endpoints4/6`,
//!   `no_endpoint_nodeports4/6`): TCP reset or ICMP port unreachable at
//!   once, instead of a connection that times out.
//! - `nat_postrouting` masquerades hairpin traffic and what was marked:
//!   external traffic with `externalTrafficPolicy: Cluster`, the node's own
//!   traffic to external addresses, and (when cluster CIDRs are known)
//!   traffic from outside them to cluster IPs (marked in the hooked chains
//!   by a lookup in `masq_cluster_ips4/6`, the cluster IP ports that pick
//!   among all endpoints).
//!
//! The agent keeps a [`Compiler`], which recompiles only the Services whose
//! inputs changed and hands out the change with the table (`incremental`);
//! [`compile`] is one pass of a new one.
//!
//! Measured figures: docs/benchmarks.md § Services (`weftctl bench
//! services`).

mod backends;
mod chains;
mod endpoints;
mod incremental;
mod journal;
mod part;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use weft_model::{EndpointSlice, IpFamily, Service};
use weft_nft::NftFamily;

use crate::nft::{BaseChain, MapDef, Ruleset, SetDef, TABLE};
pub use incremental::{Compiler, Update};

/// The packet mark bit that asks `nat_postrouting` to masquerade (the bit
/// kube-proxy uses, so the two never disagree about it when migrating).
pub const MASQUERADE_MARK: u32 = 0x4000;
/// The chain that sets [`MASQUERADE_MARK`].
pub(crate) const MARK_CHAIN: &str = "mark_for_masquerade";
/// The chain that rejects a connection to a Service without endpoints.
pub(crate) const REJECT_CHAIN: &str = "reject_no_endpoints";

/// What the compiler needs to know about the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyNode {
    /// The node's name, as EndpointSlices give it in `nodeName`: which
    /// endpoints are local for `Local` traffic policies.
    pub name: String,
    /// The node's addresses: NodePorts are served on these (kube-proxy's
    /// nftables default, "primary node IPs", rather than every local
    /// address, which would include the pods' gateway and loopback).
    pub node_ips: Vec<IpAddr>,
    /// The node's pod CIDRs: traffic from them counts as pod traffic when
    /// `cluster_cidrs` is empty.
    pub pod_cidrs: Vec<IpNet>,
    /// The cluster's pod CIDRs, when known: traffic from them counts as pod
    /// traffic, and traffic from outside them to a cluster IP is
    /// masqueraded.
    pub cluster_cidrs: Vec<IpNet>,
}

/// Compiles the proxy table of `node` from every Service and EndpointSlice
/// of the cluster. Headless and ExternalName Services and slices no Service
/// owns contribute nothing. One pass of a new [`Compiler`], which the agent
/// keeps instead to recompile only what changed.
pub fn compile(services: &[Service], slices: &[EndpointSlice], node: &ProxyNode) -> Ruleset {
    let mut compiler = Compiler::new();
    compiler.update(services, slices, node);
    compiler.into_ruleset()
}

/// The table without any Service: the node's sets, the empty shared maps,
/// the marking and rejecting chains and the hooked chains.
fn skeleton(node: &ProxyNode) -> Ruleset {
    let mut ruleset = Ruleset::new(TABLE);
    for family in [IpFamily::V4, IpFamily::V6] {
        let s = family.suffix();
        let addr = family.addr_type();
        for (map, key_type) in [
            ("service_ips", format!("{addr} . inet_proto . inet_service")),
            (
                "no_endpoints",
                format!("{addr} . inet_proto . inet_service"),
            ),
            ("service_nodeports", "inet_proto . inet_service".to_owned()),
            (
                "no_endpoint_nodeports",
                "inet_proto . inet_service".to_owned(),
            ),
        ] {
            ruleset.maps.insert(
                format!("{map}{s}"),
                MapDef {
                    key_type,
                    value_type: "verdict".to_owned(),
                    elements: BTreeMap::new(),
                },
            );
        }
        let of_family = |n: &&IpNet| IpFamily::of(n.addr()) == family;
        let cluster: Vec<IpNet> = node
            .cluster_cidrs
            .iter()
            .filter(of_family)
            .copied()
            .collect();
        let local_src = if cluster.is_empty() {
            node.pod_cidrs.iter().filter(of_family).copied().collect()
        } else {
            cluster.clone()
        };
        ruleset
            .sets
            .insert(format!("cluster_cidrs{s}"), interval_set(addr, &cluster));
        ruleset.sets.insert(
            format!("masq_cluster_ips{s}"),
            SetDef {
                typ: format!("{addr} . inet_proto . inet_service"),
                flags: Vec::new(),
                elements: BTreeSet::new(),
            },
        );
        ruleset
            .sets
            .insert(format!("local_src{s}"), interval_set(addr, &local_src));
        ruleset.sets.insert(
            format!("node_ips{s}"),
            SetDef {
                typ: addr.to_owned(),
                flags: Vec::new(),
                elements: node
                    .node_ips
                    .iter()
                    .filter(|ip| IpFamily::of(**ip) == family)
                    .map(ToString::to_string)
                    .collect(),
            },
        );
        ruleset.sets.insert(
            format!("hairpin{s}"),
            SetDef {
                typ: format!("{addr} . {addr}"),
                flags: Vec::new(),
                elements: BTreeSet::new(),
            },
        );
    }
    ruleset.chains.insert(
        MARK_CHAIN.to_owned(),
        vec![format!("meta mark set meta mark or {MASQUERADE_MARK:#x}")],
    );
    ruleset.chains.insert(
        REJECT_CHAIN.to_owned(),
        vec![
            "meta l4proto tcp reject with tcp reset".to_owned(),
            "reject with icmpx port-unreachable".to_owned(),
        ],
    );
    ruleset.base_chains = base_chains();
    ruleset
}

/// Whether an endpoint at `ip` can be the client of its own connection on
/// this node, so that the hairpin set needs it: a pod of this node (its
/// address comes from the node's pod CIDRs) or the node itself. Without a
/// pod CIDR of the family every endpoint counts, as no address can be ruled
/// out. Keeping remote endpoints out keeps the set at the node's own pods
/// rather than every endpoint of the cluster (100,000 concatenated
/// elements, a third of the load time, at 10,000 Services × 10).
fn may_hairpin(node: &ProxyNode, ip: IpAddr) -> bool {
    let family = IpFamily::of(ip);
    let mut own = node
        .pod_cidrs
        .iter()
        .filter(|n| IpFamily::of(n.addr()) == family)
        .peekable();
    own.peek().is_none() || own.any(|n| n.contains(&ip)) || node.node_ips.contains(&ip)
}

/// The hooked chains. nft 1.0 knows the `dstnat` priority name only in
/// prerouting, so output spells its value (-100) out. They hold every map lookup (the shared renderer
/// loads maps after regular chains) and depend on nothing but constants,
/// so they never change between compilations.
fn base_chains() -> BTreeMap<String, BaseChain> {
    let mut lookups = Vec::new();
    let mut rejects = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        let (kw, s) = (family.keyword(), family.suffix());
        let service = format!("{kw} daddr . meta l4proto . th dport");
        let node_port = format!("{kw} daddr @node_ips{s} meta l4proto . th dport");
        lookups.push(format!(
            "{kw} saddr != @cluster_cidrs{s} {service} @masq_cluster_ips{s} jump {MARK_CHAIN}"
        ));
        lookups.push(format!("{service} vmap @service_ips{s}"));
        lookups.push(format!("{node_port} vmap @service_nodeports{s}"));
        rejects.push(format!("ct state new {service} vmap @no_endpoints{s}"));
        rejects.push(format!(
            "ct state new {node_port} vmap @no_endpoint_nodeports{s}"
        ));
    }
    let chain = |hook: &str, rules: &[String]| BaseChain {
        hook: hook.to_owned(),
        rules: rules.to_vec(),
    };
    BTreeMap::from([
        (
            "filter_prerouting".to_owned(),
            chain(
                "type filter hook prerouting priority dstnat - 10; policy accept;",
                &rejects,
            ),
        ),
        (
            "filter_output".to_owned(),
            chain(
                "type filter hook output priority -110; policy accept;",
                &rejects,
            ),
        ),
        (
            "nat_prerouting".to_owned(),
            chain(
                "type nat hook prerouting priority dstnat; policy accept;",
                &lookups,
            ),
        ),
        (
            "nat_output".to_owned(),
            chain(
                "type nat hook output priority -100; policy accept;",
                &lookups,
            ),
        ),
        (
            "nat_postrouting".to_owned(),
            chain(
                "type nat hook postrouting priority srcnat; policy accept;",
                &[
                    // The bit is cleared so that it does not leak into
                    // other tables' decisions further on.
                    format!(
                        "meta mark and {MASQUERADE_MARK:#x} != 0 meta mark set meta mark xor {MASQUERADE_MARK:#x} masquerade fully-random"
                    ),
                    "ct status dnat ip saddr . ip daddr @hairpin4 masquerade fully-random"
                        .to_owned(),
                    "ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade fully-random"
                        .to_owned(),
                ],
            ),
        ),
    ])
}

fn interval_set(addr_type: &str, nets: &[IpNet]) -> SetDef {
    let nets: Vec<IpNet> = nets.iter().map(IpNet::trunc).collect();
    SetDef {
        typ: addr_type.to_owned(),
        flags: vec!["interval".to_owned()],
        // Aggregated: overlapping intervals would fail the load.
        elements: IpNet::aggregate(&nets)
            .iter()
            .map(ToString::to_string)
            .collect::<BTreeSet<_>>(),
    }
}

/// Keeps a name part to what nft accepts in an unquoted identifier.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
