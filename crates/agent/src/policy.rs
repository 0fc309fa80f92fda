//! NetworkPolicy on this node: find the attached pods, compile the node's
//! policy table (`weft_policy::compile`) and bring the kernel's table
//! `inet weft-policy` to it, as a delta whenever possible.
//!
//! Attached pods are found from the kernel, not from the model alone: the
//! plugin installs a /32 (/128) host route (protocol boot) per pod address
//! through the pod's host veth (`weft…`, kind veth). A model pod of this
//! node whose addresses have such routes becomes a [`LocalPod`]; an address
//! with a route and no model pod yet stays out of the ruleset, and the
//! compiler's "no window" rule keeps it blocked until its policy is known.
//!
//! Change detection: the SHA-256 of the rendered full table is stamped into
//! the table as the comment of the one element of set
//! [`STATE_SET`]. A table's own comment cannot be changed after creation
//! (the kernel ignores it on update), so it could not follow a delta; an
//! element can be replaced in the same transaction as the delta. Reading it
//! back lists that one small set, whatever the table's size.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use tracing::{info, instrument, warn};
use weft_model::{Node, Pod, PodPhase};
use weft_netlink::{Family, RTPROT_BOOT, Route};
use weft_policy::nft::{Ruleset, Stats, TABLE, render_delta, render_full};
use weft_policy::{HOST_IF_PATTERN, LocalPod, NodeInputs, PolicyView, compile};

use crate::error::Result;
use crate::kernel::{Kernel, LinkState};
use crate::nft::{HASH_PREFIX, hex};

/// The set in the policy table whose one element carries the agent's hash
/// in its comment. The compiler never uses this name.
pub const STATE_SET: &str = "agent_state";

/// What a policy pass did to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    /// The kernel already held the desired table.
    Unchanged,
    /// The kernel's table carries the desired hash although this agent has
    /// not applied it (a restart): adopted as it is, nothing applied.
    Adopted,
    /// The whole table was loaded in one transaction (first pass, table
    /// missing or changed behind the agent's back, or a failed delta).
    Full,
    /// Only the difference was applied, in one transaction.
    Delta,
}

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

/// What this agent last loaded into the policy table. Kept across passes so
/// that a change is applied as a delta against it.
#[derive(Debug, Default)]
pub struct PolicyState {
    applied: Option<Applied>,
}

#[derive(Debug)]
struct Applied {
    ruleset: Ruleset,
    hash: String,
}

impl PolicyState {
    /// No table applied yet: the first pass compares the kernel's stamp
    /// with the desired hash (and adopts an equal table).
    pub fn new() -> PolicyState {
        PolicyState::default()
    }

    /// Brings table `inet weft-policy` to `ruleset`.
    ///
    /// When the kernel still carries the stamp of what this agent applied,
    /// only [`render_delta`] is applied (nothing when it is `None`). Else,
    /// when the kernel's stamp equals the desired hash, the table is adopted
    /// (hitless restart); otherwise the whole table is loaded atomically. A
    /// delta the kernel refuses falls back to a full load.
    pub fn apply(&mut self, kernel: &mut impl Kernel, ruleset: Ruleset) -> Result<PolicyAction> {
        let have = kernel.policy_hash()?;
        if let Some(applied) = self.applied.take() {
            if have.as_deref() == Some(applied.hash.as_str()) {
                let Some(delta) = render_delta(&applied.ruleset, &ruleset) else {
                    self.applied = Some(applied);
                    return Ok(PolicyAction::Unchanged);
                };
                let hash = ruleset_hash(&ruleset);
                match kernel.policy_apply(&(delta + &stamp(&hash))) {
                    Ok(()) => {
                        self.applied = Some(Applied { ruleset, hash });
                        return Ok(PolicyAction::Delta);
                    }
                    Err(e) => warn!(error = %e, "policy delta refused; loading the whole table"),
                }
            } else {
                warn!(
                    table = TABLE,
                    expected = applied.hash,
                    found = ?have,
                    "policy table missing or changed behind the agent; reloading it"
                );
            }
        }
        let hash = ruleset_hash(&ruleset);
        if have.as_deref() == Some(hash.as_str()) {
            self.applied = Some(Applied { ruleset, hash });
            return Ok(PolicyAction::Adopted);
        }
        kernel.policy_apply(&(render_full(&ruleset) + &stamp(&hash)))?;
        self.applied = Some(Applied { ruleset, hash });
        Ok(PolicyAction::Full)
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
    let ruleset = compile(view, &inputs);
    let stats = ruleset.stats();
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

/// The hash stamped for `ruleset`: SHA-256 of its full rendering, which is
/// a deterministic function of the ruleset.
pub fn ruleset_hash(ruleset: &Ruleset) -> String {
    hex(&Sha256::digest(render_full(ruleset).as_bytes()))
}

/// The commands that (re)write the stamp, appended to every transaction:
/// `add set` is a no-op when the set exists, `flush` drops the old element.
fn stamp(hash: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "add set {TABLE} {STATE_SET} {{ type inet_service; }}");
    let _ = writeln!(out, "flush set {TABLE} {STATE_SET}");
    let _ = writeln!(
        out,
        "add element {TABLE} {STATE_SET} {{ 0 comment \"{HASH_PREFIX}{hash}\" }}"
    );
    out
}

/// The hash in the stamp, from `nft list set inet weft-policy agent_state`
/// (or from a script that writes it); `None` without a stamp.
pub fn hash_from_stamp(listing: &str) -> Option<String> {
    let marker = format!("comment \"{HASH_PREFIX}");
    let start = listing.rfind(&marker)? + marker.len();
    let rest = &listing[start..];
    let hash = &rest[..rest.find('"')?];
    (!hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_owned())
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
