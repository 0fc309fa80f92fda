//! A local pod's chain for one direction: the union of the rules of every
//! policy that isolates it, as accept (ingress) or return (egress) rules,
//! then `drop`.
//!
//! One nft rule per (policy rule, peer, port), peers and named ports through
//! the shared sets of [`Peers`]. Rules are sorted and deduplicated (all of
//! them end in the same verdict, so order is irrelevant), which makes the
//! chain's text canonical: pods whose policies resolve to the same rules get
//! the same chain, named by a hash of its rules, and share it.

use std::collections::BTreeSet;

use weft_model::{Direction, NetworkPolicy, Peer, Pod, PolicyPort, PortMatch};

use super::peers::{Peers, protocol_name};
use crate::evaluate::selects;
use crate::view::IpFamily;
use weft_nft::{NftFamily, short_hash};

/// One condition of a rule, for one family (`None`: any family).
type Fragment = (Option<IpFamily>, String);

/// The chain of `pod` for `direction` as (name, rules), or `None` when no
/// policy isolates the pod in that direction (its traffic then skips the
/// chain: no map element points anywhere). `policies` are those of the
/// pod's namespace (the only ones that can select it).
pub(crate) fn pod_chain<'a>(
    policies: &[&'a NetworkPolicy],
    peers: &mut Peers<'a>,
    pod: &Pod,
    direction: Direction,
) -> Option<(String, Vec<String>)> {
    if pod.host_network {
        return None;
    }
    let mut isolated = false;
    let mut rules = BTreeSet::new();
    let verdict = match direction {
        Direction::Ingress => "accept",
        Direction::Egress => "return",
    };
    for policy in policies.iter().filter(|p| selects(p, pod, direction)) {
        isolated = true;
        for rule in policy.rules(direction) {
            let peer_matches = if rule.peers.is_empty() {
                vec![(None, String::new())]
            } else {
                rule.peers
                    .iter()
                    .flat_map(|peer| peer_fragments(peers, &policy.namespace, peer, direction))
                    .collect()
            };
            let port_matches = if rule.ports.is_empty() {
                vec![(None, String::new())]
            } else {
                rule.ports
                    .iter()
                    .flat_map(|port| port_fragments(peers, pod, port, direction))
                    .collect()
            };
            for (peer_family, peer) in &peer_matches {
                for (port_family, port) in &port_matches {
                    if peer_family.is_some() && port_family.is_some() && peer_family != port_family
                    {
                        continue; // an IPv4 peer with an IPv6 port set: never matches
                    }
                    let text: Vec<&str> = [peer.as_str(), port.as_str(), verdict]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect();
                    rules.insert(text.join(" "));
                }
            }
        }
    }
    if !isolated {
        return None;
    }
    let mut rules: Vec<String> = rules.into_iter().collect();
    rules.push("drop".to_owned());
    let prefix = match direction {
        Direction::Ingress => "in_",
        Direction::Egress => "eg_",
    };
    Some((format!("{prefix}{}", short_hash(&rules.join("\n"))), rules))
}

/// The conditions matching a peer: the other end's address in a set.
fn peer_fragments<'a>(
    peers: &mut Peers<'a>,
    policy_namespace: &'a str,
    peer: &'a Peer,
    direction: Direction,
) -> Vec<Fragment> {
    let field = match direction {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    let sets = match peer {
        Peer::Selector {
            namespace_selector,
            pod_selector,
        } => peers.selector(
            policy_namespace,
            namespace_selector.as_ref(),
            pod_selector.as_ref(),
        ),
        Peer::IpBlock(block) => peers.ip_block(block).into_iter().collect(),
    };
    sets.into_iter()
        .map(|(family, set)| (Some(family), format!("{} {field} @{set}", family.keyword())))
        .collect()
}

/// The conditions matching a port: protocol and number, or for a named
/// egress port, the destination's (address, protocol, port) in a set.
fn port_fragments(
    peers: &mut Peers<'_>,
    pod: &Pod,
    port: &PolicyPort,
    direction: Direction,
) -> Vec<Fragment> {
    let proto = protocol_name(port.protocol);
    let numeric = |range: String| (None, format!("meta l4proto {proto} th dport {range}"));
    match &port.port {
        None => vec![(None, format!("meta l4proto {proto}"))],
        Some(range @ PortMatch::Range { .. }) => vec![numeric(range.to_string())],
        // Ingress: the destination is the pod itself, so the name resolves
        // now, to the numbers it declares (none: the port matches nothing).
        Some(PortMatch::Named(name)) if direction == Direction::Ingress => pod
            .ports
            .iter()
            .filter(|cp| cp.name.as_deref() == Some(name.as_str()) && cp.protocol == port.protocol)
            .map(|cp| cp.port)
            .collect::<BTreeSet<u16>>()
            .into_iter()
            .map(|n| numeric(n.to_string()))
            .collect(),
        Some(PortMatch::Named(name)) => peers
            .named_port(name, port.protocol)
            .into_iter()
            .map(|(family, set)| {
                let kw = family.keyword();
                (
                    Some(family),
                    format!("{kw} daddr . meta l4proto . th dport @{set}"),
                )
            })
            .collect(),
    }
}
