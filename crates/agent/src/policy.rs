//! NetworkPolicy on this node: find the attached pods, compile the node's
//! policy table ([`weft_policy::Compiler`], which reuses the previous
//! pass's peer sets while pods and namespaces are unchanged, so a policy
//! change does not rebuild them) and bring the kernel's table
//! `inet weft-policy` to it, as a delta whenever possible.
//!
//! Attached pods are found from the kernel, not from the model alone: the
//! plugin installs a /32 (/128) host route (protocol boot) per pod address
//! through the pod's host veth (`weft…`, kind veth). A model pod of this
//! node whose addresses have such routes becomes a [`LocalPod`]; an address
//! with a route and no model pod yet stays out of the ruleset, and the
//! compiler's "no window" rule keeps it blocked until its policy is known.
//!
//! The table is kept by [`crate::stamped`]: a hash stamp in set
//! [`STATE_SET`], the whole table first or on mismatch, deltas afterwards.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use tracing::{info, instrument};
use weft_model::{Node, Pod, PodPhase};
use weft_netlink::{Family, RTPROT_BOOT, Route};
use weft_policy::nft::{Ruleset, Stats, TABLE};
use weft_policy::{Compiler, HOST_IF_PATTERN, LocalPod, NodeInputs, PolicyView};

use crate::error::Result;
use crate::kernel::{Kernel, LinkState};
pub use crate::stamped::{STATE_SET, hash_from_stamp, ruleset_hash};
use crate::stamped::{StampedTable, TableAction, TableIo};

/// What a policy pass did to the kernel.
pub type PolicyAction = TableAction;

/// The outcome of one policy pass, for logs and the agent's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyReport {
    /// What was applied.
    pub action: PolicyAction,
    /// Pods attached on this node and covered by the table.
    pub local_pods: usize,
    /// Policies in the model (all namespaces).
    pub policies: usize,
    /// The size of the desired table.
    pub stats: Stats,
}

/// What this agent last loaded into the policy table, and the compiler
/// that produced it. Kept across passes so that a change is compiled from
/// what it touches and applied as a delta.
#[derive(Debug, Default)]
pub struct PolicyState {
    table: StampedTable,
    compiler: Compiler,
    /// The addresses of local pods that no policy selects, in either
    /// direction, as of the last pass.
    open: BTreeSet<IpAddr>,
}

impl PolicyState {
    /// No table applied yet: the first pass compares the kernel's stamp
    /// with the desired hash (and adopts an equal table).
    pub fn new() -> PolicyState {
        PolicyState::default()
    }

    /// The addresses of this node's attached pods that no NetworkPolicy
    /// selects in either direction (as of the last pass): the policy
    /// chains accept anything to and from them. Unknown pods are not open.
    pub fn open_pods(&self) -> &BTreeSet<IpAddr> {
        &self.open
    }

    /// Brings table `inet weft-policy` to `ruleset`: a delta against what
    /// this agent last applied while the kernel still carries its stamp,
    /// else adoption of an equal table (hitless restart) or a full load.
    pub fn apply<K: Kernel>(&mut self, kernel: &mut K, ruleset: Ruleset) -> Result<PolicyAction> {
        debug_assert_eq!(ruleset.table, TABLE);
        let io = TableIo {
            hash: K::policy_hash,
            apply: K::policy_apply,
        };
        self.table.apply(kernel, &io, ruleset)
    }
}

/// One policy pass: finds this node's attached pods in `kernel`, compiles
/// the table for `node` from `view` and applies it through `state`.
#[instrument(skip_all, fields(node = %node.name))]
pub fn reconcile_policy(
    kernel: &mut impl Kernel,
    state: &mut PolicyState,
    view: &PolicyView,
    node: &Node,
) -> Result<PolicyReport> {
    let links = kernel.links()?;
    let mut routes = kernel.routes(Family::V4, RTPROT_BOOT)?;
    routes.extend(kernel.routes(Family::V6, RTPROT_BOOT)?);
    let inputs = NodeInputs {
        pod_cidrs: node.pod_cidrs.clone(),
        pods: local_pods(&view.pods, &node.name, &links, &routes),
    };
    let ruleset = state.compiler.compile(view, &inputs);
    let stats = ruleset.stats();
    // A pod some policy selects has an entry in the ingress or egress map
    // of its family.
    let selected: BTreeSet<IpAddr> = ["ingress4", "egress4", "ingress6", "egress6"]
        .iter()
        .filter_map(|m| ruleset.maps.get(*m))
        .flat_map(|m| m.elements.keys())
        .filter_map(|k| k.parse().ok())
        .collect();
    state.open = inputs
        .pods
        .iter()
        .flat_map(|p| p.ips.iter().copied())
        .filter(|ip| !selected.contains(ip))
        .collect();
    let action = state.apply(kernel, ruleset)?;
    let report = PolicyReport {
        action,
        local_pods: inputs.pods.len(),
        policies: view.policies.len(),
        stats,
    };
    if action != PolicyAction::Unchanged {
        info!(?report, "policy table applied");
    }
    Ok(report)
}

/// The pods of node `node_name` attached here: a model pod whose addresses
/// have a host route (/32, /128) through a pod veth (`weft…`, kind veth).
/// Only the addresses routed through the same veth as its first routed one
/// count. An address two model pods claim (a finished pod's, reused) goes
/// to the first running one; finished and host-network pods are left out.
/// Sorted by namespace and name, so equal kernels give equal rulesets.
pub fn local_pods(
    pods: &[Pod],
    node_name: &str,
    links: &[LinkState],
    routes: &[Route],
) -> Vec<LocalPod> {
    let prefix = HOST_IF_PATTERN.trim_end_matches('*');
    let veths: BTreeMap<u32, &str> = links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("veth") && l.name.starts_with(prefix))
        .map(|l| (l.index, l.name.as_str()))
        .collect();
    let routed: BTreeMap<IpAddr, &str> = routes
        .iter()
        .filter(|r| r.dst.prefix_len() == r.dst.max_prefix_len())
        .filter_map(|r| Some((r.dst.addr(), *veths.get(&r.oif?)?)))
        .collect();
    let mut candidates: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.node_name.as_deref() == Some(node_name) && !p.host_network)
        .filter(|p| !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
        .collect();
    candidates.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut taken: HashSet<IpAddr> = HashSet::new();
    let mut out = Vec::new();
    for pod in candidates {
        let mut host_if = None;
        let mut ips = Vec::new();
        for ip in &pod.ips {
            let Some(link) = routed.get(ip) else { continue };
            if taken.contains(ip) || *host_if.get_or_insert(*link) != *link {
                continue;
            }
            ips.push(*ip);
        }
        if let Some(host_if) = host_if.filter(|_| !ips.is_empty()) {
            taken.extend(ips.iter().copied());
            out.push(LocalPod {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ips,
                host_if: host_if.to_owned(),
            });
        }
    }
    out
}

/// The stamp commands for the policy table (what every transaction ends
/// with).
#[cfg(test)]
fn stamp(hash: &str) -> String {
    crate::stamped::stamp(TABLE, hash)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
