//! The reference evaluator: may this packet pass, and why.
//!
//! Semantics, each from the `networking.k8s.io/v1` API reference
//! (`NetworkPolicySpec`, `NetworkPolicyIngressRule`, `NetworkPolicyPeer`,
//! `NetworkPolicyPort` field docs) unless said otherwise:
//!
//! - A pod is isolated for a direction when at least one policy of its
//!   namespace selects it (`podSelector`) and lists that direction in its
//!   (defaulted) `policyTypes`. A pod nothing selects is not isolated: all
//!   traffic of that direction passes.
//! - An isolated pod's allowed traffic is the union of the rules of every
//!   policy selecting it for that direction ("the ingress rules for each are
//!   combined additively"); policies never deny, they only allow.
//! - A packet passes when egress allows it on the source (if the source is a
//!   pod) AND ingress allows it on the destination (if the destination is a
//!   pod). Upstream e2e "should support denying of egress traffic on the
//!   client side (even if the server explicitly allows this traffic)".
//! - Ingress from the destination pod's own node always passes
//!   (`NetworkPolicySpec.ingress`: "... OR if the traffic source is the
//!   pod's local node").
//! - A rule matches when a peer matches (or it has none) and a port matches
//!   (or it has none). Peers: see [`weft_model::Peer`]; `ipBlock` matches by
//!   the address the packet carries, pod or not, minus `except`.
//! - Ports match protocol and number; `endPort` ranges are inclusive; a named
//!   port matches when the **destination** pod declares a container port of
//!   that name and protocol with the packet's port (also for egress rules,
//!   upstream e2e "should allow egress access on one named port").
//! - Host-network pods are node traffic: no policy selects them, no pod
//!   selector matches them, only `ipBlock` does, by their (node) address
//!   (NetworkPolicy concepts page: host-network pods are not reliably
//!   selected, implementations treat them like the node).
//! - Traffic from a pod to itself is subject to policy like any other.
//!   Upstream e2e truth tables expect it so (for example "should enforce
//!   policy based on PodSelector or NamespaceSelector" expects x/a -> x/a
//!   denied) although the suite then ignores loopback cells when judging
//!   (`ignoreLoopback`, kubernetes#95879). A datapath that cannot see
//!   pod-to-self traffic must leave those cells out of differential tests.
//! - Replies of allowed connections are out of scope: the datapath lets them
//!   through by connection tracking; the evaluator judges the packet that
//!   opens a connection.

use std::borrow::Cow;

use weft_model::{Direction, LabelSelector, Labels, NetworkPolicy, Peer, Pod, PolicyPort};

use crate::view::{Packet, Party, PolicyView};

/// The verdict on a packet, with its reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Egress and ingress both allow the packet.
    pub allowed: bool,
    /// The source pod's egress side (not isolated when it is no pod).
    pub egress: DirectionVerdict,
    /// The destination pod's ingress side (not isolated when it is no pod).
    pub ingress: DirectionVerdict,
}

/// One direction's verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionVerdict {
    /// Some policy selects the pod for this direction.
    pub isolated: bool,
    /// The direction lets the packet through.
    pub allowed: bool,
    /// The policies (`namespace/name`) that select the pod for this
    /// direction: the ones that isolate it.
    pub selected_by: Vec<String>,
    /// Every rule, peer and port that allows the packet, in policy order.
    pub by: Vec<RuleRef>,
    /// Ingress from the pod's own node: allowed whatever the policies say.
    pub from_local_node: bool,
}

/// A rule (and the peer and port inside it) that allows a packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    /// The policy, `namespace/name`.
    pub policy: String,
    /// The direction of the rule (`spec.ingress` or `spec.egress`).
    pub direction: Direction,
    /// Index into `spec.ingress` / `spec.egress`.
    pub rule_index: usize,
    /// Index into `from` / `to`; `None` when the rule has no peers (all).
    pub peer_index: Option<usize>,
    /// Index into `ports`; `None` when the rule has no ports (all).
    pub port_index: Option<usize>,
}

/// Decides whether `packet` may pass under the policies of `cluster`.
///
/// Pure and total: a pod name the view does not hold is taken as a pod of
/// that namespace without labels, ports or addresses (callers that must tell
/// the user should check [`PolicyView::pod`] first).
pub fn evaluate(cluster: &PolicyView, packet: &Packet) -> Verdict {
    let (src, dst) = cluster.resolve(packet);
    let egress = match src.pod.as_deref() {
        Some(pod) => direction(cluster, pod, Direction::Egress, &dst, &dst, packet),
        None => open(),
    };
    let ingress = match dst.pod.as_deref() {
        Some(pod) => {
            let local = src
                .addr
                .is_some_and(|a| cluster.is_local_node_address(pod, a));
            let mut verdict = direction(cluster, pod, Direction::Ingress, &src, &dst, packet);
            if local && !verdict.allowed {
                verdict.allowed = true;
                verdict.from_local_node = true;
            }
            verdict
        }
        None => open(),
    };
    Verdict {
        allowed: egress.allowed && ingress.allowed,
        egress,
        ingress,
    }
}

/// The verdict of a side that no policy can isolate.
fn open() -> DirectionVerdict {
    DirectionVerdict {
        allowed: true,
        ..DirectionVerdict::default()
    }
}

/// Evaluates `direction` on `subject`, the pod whose policies apply; `peer`
/// is the other end, `dst` the destination (for named ports).
fn direction(
    cluster: &PolicyView,
    subject: &Pod,
    direction: Direction,
    peer: &Party<'_>,
    dst: &Party<'_>,
    packet: &Packet,
) -> DirectionVerdict {
    if subject.host_network {
        return open();
    }
    let mut verdict = DirectionVerdict::default();
    let selecting = cluster
        .policies
        .iter()
        .filter(|p| selects(p, subject, direction));
    for policy in selecting {
        let key = policy.key();
        for (rule_index, rule) in policy.rules(direction).iter().enumerate() {
            let peers = hits(&rule.peers, |p| peer_matches(cluster, policy, p, peer));
            let ports = hits(&rule.ports, |p| port_matches(p, dst, packet));
            for peer_index in &peers {
                for port_index in &ports {
                    verdict.by.push(RuleRef {
                        policy: key.clone(),
                        direction,
                        rule_index,
                        peer_index: *peer_index,
                        port_index: *port_index,
                    });
                }
            }
        }
        verdict.selected_by.push(key);
    }
    verdict.isolated = !verdict.selected_by.is_empty();
    verdict.allowed = !verdict.isolated || !verdict.by.is_empty();
    verdict
}

/// The indices of the matching items; `[None]` for an empty list, which
/// matches everything.
fn hits<T>(items: &[T], matches: impl Fn(&T) -> bool) -> Vec<Option<usize>> {
    if items.is_empty() {
        return vec![None];
    }
    (0..items.len())
        .filter(|i| matches(&items[*i]))
        .map(Some)
        .collect()
}

fn peer_matches(
    cluster: &PolicyView,
    policy: &NetworkPolicy,
    peer: &Peer,
    party: &Party<'_>,
) -> bool {
    match peer {
        Peer::IpBlock(block) => party.addr.is_some_and(|a| block.contains(&a)),
        Peer::Selector {
            namespace_selector,
            pod_selector,
        } => party.pod.as_deref().is_some_and(|pod| {
            selector_peer_matches(
                &policy.namespace,
                namespace_selector.as_ref(),
                pod_selector.as_ref(),
                pod,
                |ns| Cow::Owned(cluster.namespace_labels(ns)),
            )
        }),
    }
}

/// Whether `policy` selects `pod` (its `podSelector`, its namespace) and
/// isolates it in `direction`. Shared with the compiler, which must select
/// exactly as the evaluator does.
pub(crate) fn selects(policy: &NetworkPolicy, pod: &Pod, direction: Direction) -> bool {
    policy.namespace == pod.namespace
        && policy.applies_to(direction)
        && policy.pod_selector.matches(&pod.labels)
}

/// Whether a selector peer (`namespaceSelector` and/or `podSelector`) of a
/// policy in `policy_namespace` matches `pod`; `namespace_labels` is asked
/// only when a namespace selector needs them. Host-network pods never match
/// a selector (they are node traffic). Shared with the compiler, which fills
/// its peer sets with exactly the pods this accepts.
pub(crate) fn selector_peer_matches<'a>(
    policy_namespace: &str,
    namespace_selector: Option<&LabelSelector>,
    pod_selector: Option<&LabelSelector>,
    pod: &Pod,
    namespace_labels: impl FnOnce(&str) -> Cow<'a, Labels>,
) -> bool {
    if pod.host_network {
        return false;
    }
    let namespace_ok = match namespace_selector {
        None => pod.namespace == policy_namespace,
        Some(s) => s.matches(&namespace_labels(&pod.namespace)),
    };
    namespace_ok && pod_selector.is_none_or(|s| s.matches(&pod.labels))
}

fn port_matches(port: &PolicyPort, dst: &Party<'_>, packet: &Packet) -> bool {
    if port.protocol != packet.protocol {
        return false;
    }
    let Some(spec) = &port.port else {
        return true;
    };
    spec.matches_number(packet.port)
        || dst
            .pod
            .as_deref()
            .filter(|p| !p.host_network)
            .is_some_and(|p| spec.matches_named(port.protocol, packet.port, &p.ports))
}
