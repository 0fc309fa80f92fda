//! The NetworkPolicy compiler: the model and one node's local pods in, the
//! node's policy table ([`Ruleset`]) out. Pure and deterministic; the agent
//! applies the result with [`crate::nft::render_full`] or
//! [`crate::nft::render_delta`].
//!
//! The base chain `forward`, in order (each step constant cost per packet:
//! set and map lookups, then the rules of at most two pods' chains):
//!
//! 1. **Anti-spoofing.** A packet entering from a pod's host veth must carry
//!    that pod's address: `iifname . saddr` in `pod_src4`/`pod_src6`, else
//!    drop. Matched by `meta iifkind "veth" iifname "weft*"`: the kind check
//!    keeps the agent's VXLAN device (`weft.vxlan`, same prefix) out. A
//!    family the node has no pods of is dropped from pod veths outright.
//!    This runs before connection tracking's accept (the brief had it after)
//!    so that a pod cannot inject into another pod's established connection
//!    with a forged source.
//! 2. **No window for new pods.** An address of this node's pod CIDRs that
//!    is not in `known4`/`known6` (the pods this ruleset covers) can neither
//!    send nor receive: a pod is unreachable until its policy is programmed.
//!    Also before conntrack, so that an address reused by a new pod cannot
//!    inherit the old pod's connections.
//! 3. `ct state established,related accept`, `ct state invalid drop`:
//!    replies of allowed connections pass.
//! 4. **Egress** of local pods: `saddr vmap @egress4` jumps to the source
//!    pod's egress chain (pods not isolated for egress have no element);
//!    a matching rule `return`s, so ingress is still checked for traffic
//!    between pods of this node; the chain ends in `drop`.
//! 5. **Ingress** of local pods: `daddr vmap @ingress4` jumps to the
//!    destination pod's ingress chain, which accepts on a match and ends in
//!    `drop`.
//!
//! Traffic between a pod and its own node's addresses uses the input and
//! output hooks, not forward: ingress from the local node is allowed by the
//! API anyway; egress policies do not cover a pod's traffic to its own node
//! (a known gap of this table, like peers that enforce in forward only).

mod cache;
mod chains;
mod index;
mod interval;
mod peers;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use weft_model::{Direction, Pod, PodPhase};
use weft_nft::NftFamily;

use crate::nft::{BASE_CHAIN, BASE_CHAIN_HOOK, BaseChain, MapDef, Ruleset, SetDef, TABLE};
use crate::view::{IpFamily, PolicyView, unknown_pod};
pub use cache::Compiler;
use chains::pod_chain;
use index::NamespacePolicies;
use peers::{PeerPod, Peers};

/// The pattern of pod host veth names: `weft_cni`'s `HOST_IF_PREFIX`
/// followed by anything (the plugin appends a hash).
pub const HOST_IF_PATTERN: &str = "weft*";

/// What the compiler needs to know about the node beyond the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInputs {
    /// The node's pod CIDRs: addresses in them that no local pod holds are
    /// blocked both ways (the "no window" rule).
    pub pod_cidrs: Vec<IpNet>,
    /// The pods attached on this node, as the agent found them.
    pub pods: Vec<LocalPod>,
}

/// A pod attached on this node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalPod {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Its addresses as attached (they may precede the model's
    /// `status.podIPs`, which the API server fills in later).
    pub ips: Vec<IpAddr>,
    /// The host side of its veth (`weft_cni::plugin::naming::host_ifname`).
    /// A pod whose name is not a valid interface name (1–15 bytes, no
    /// quote, slash, whitespace or NUL) is left out of the ruleset, so its
    /// addresses stay blocked rather than its traffic unchecked.
    pub host_if: String,
}

/// Compiles the policy table for one node: `view` is the cluster (every
/// pod, for peer sets), `node` its own pod CIDRs and attached pods. To
/// compile the same node again and again, [`Compiler`] gives the same
/// result for less.
pub fn compile(view: &PolicyView, node: &NodeInputs) -> Ruleset {
    compile_with(view, node, |_, _| HashMap::new())
}

/// [`compile`], with peer sets taken from `reuse` where it has them by
/// name: it is asked once, with the families and peer pods the sets are
/// built from, and must give only sets that those inputs would produce.
fn compile_with(
    view: &PolicyView,
    node: &NodeInputs,
    reuse: impl FnOnce(&[IpFamily], &[PeerPod<'_>]) -> HashMap<String, SetDef>,
) -> Ruleset {
    let local: Vec<&LocalPod> = node
        .pods
        .iter()
        .filter(|p| valid_ifname(&p.host_if))
        .collect();
    let families = families(node, &local);

    // One pass over the cluster's pods finds the local pods' model objects
    // (the first of a name, as `PolicyView::pod` would) and the peers, so
    // that no step below scans every pod once per local pod.
    // By name alone: hashing one short string per cluster pod, not two.
    let mut by_name: HashMap<&str, Vec<&LocalPod>> = HashMap::with_capacity(local.len());
    for lp in &local {
        by_name.entry(lp.name.as_str()).or_default().push(lp);
    }
    // The last of duplicate entries wins, as it always has.
    let local_pod = |pod: &Pod| {
        by_name
            .get(pod.name.as_str())
            .and_then(|lps| lps.iter().rev().find(|lp| lp.namespace == pod.namespace))
            .copied()
    };
    let mut model: HashMap<(&str, &str), &Pod> = HashMap::with_capacity(local.len());
    let mut peer_pods: Vec<PeerPod<'_>> = Vec::with_capacity(view.pods.len());
    for pod in &view.pods {
        let lp = local_pod(pod);
        if lp.is_some() {
            model
                .entry((pod.namespace.as_str(), pod.name.as_str()))
                .or_insert(pod);
        }
        if is_peer(pod) {
            peer_pods.push(peer_pod(pod, lp));
        }
    }
    // Local pods the model does not hold yet: namespace-wide policies still
    // select them, as the evaluator reads an unknown pod.
    let unknown: Vec<Pod> = local
        .iter()
        .filter(|p| !model.contains_key(&(p.namespace.as_str(), p.name.as_str())))
        .map(|p| unknown_pod(&p.namespace, &p.name))
        .collect();
    peer_pods.extend(
        unknown
            .iter()
            .filter(|p| is_peer(p))
            .map(|pod| peer_pod(pod, local_pod(pod))),
    );
    let reusable = reuse(&families, &peer_pods);
    let mut peers = Peers::new(
        &families,
        &peer_pods,
        Box::new(|ns| view.namespace_labels(ns)),
        reusable,
    );

    // Only a pod's own namespace's policies can select it, so only the
    // local pods' namespaces' policies matter: the others, and their peers,
    // cannot change this node's table.
    let mut by_namespace: HashMap<&str, NamespacePolicies<'_>> = local
        .iter()
        .map(|p| (p.namespace.as_str(), NamespacePolicies::default()))
        .collect();
    for policy in &view.policies {
        if let Some(policies) = by_namespace.get_mut(policy.namespace.as_str()) {
            policies.push(policy);
        }
    }

    let mut ruleset = Ruleset::new(TABLE);
    let mut maps: BTreeMap<(Direction, IpFamily), BTreeMap<String, String>> = BTreeMap::new();
    for lp in &local {
        let pod = model
            .get(&(lp.namespace.as_str(), lp.name.as_str()))
            .map_or_else(
                || Cow::Owned(unknown_pod(&lp.namespace, &lp.name)),
                |p| Cow::Borrowed(*p),
            );
        // The pod selector decides for both directions: test it once, and
        // leave `pod_chain` the few policies that pass.
        let policies = by_namespace
            .get_mut(pod.namespace.as_str())
            .map(|n| n.selecting(&pod.labels))
            .unwrap_or_default();
        for direction in [Direction::Ingress, Direction::Egress] {
            let Some((chain, rules)) = pod_chain(&policies, &mut peers, &pod, direction) else {
                continue;
            };
            for ip in lp
                .ips
                .iter()
                .filter(|ip| families.contains(&IpFamily::of(**ip)))
            {
                maps.entry((direction, IpFamily::of(*ip)))
                    .or_default()
                    .insert(ip.to_string(), format!("jump {chain}"));
            }
            ruleset.chains.insert(chain, rules);
        }
    }
    ruleset.sets = std::mem::take(&mut peers.sets);

    for family in &families {
        let s = family.suffix();
        let of_family = |ip: &&IpAddr| IpFamily::of(**ip) == *family;
        let cidrs: Vec<IpNet> = node
            .pod_cidrs
            .iter()
            .filter(|n| IpFamily::of(n.addr()) == *family)
            .map(IpNet::trunc)
            .collect();
        ruleset.sets.insert(
            format!("local_cidrs{s}"),
            SetDef {
                typ: family.addr_type().to_owned(),
                flags: vec!["interval".to_owned()],
                // Aggregated: overlapping intervals would fail the load.
                elements: IpNet::aggregate(&cidrs)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            },
        );
        ruleset.sets.insert(
            format!("known{s}"),
            SetDef {
                typ: family.addr_type().to_owned(),
                flags: Vec::new(),
                elements: local
                    .iter()
                    .flat_map(|p| p.ips.iter().filter(of_family))
                    .map(ToString::to_string)
                    .collect(),
            },
        );
        ruleset.sets.insert(
            format!("pod_src{s}"),
            SetDef {
                typ: format!("ifname . {}", family.addr_type()),
                flags: Vec::new(),
                elements: local
                    .iter()
                    .flat_map(|p| {
                        p.ips
                            .iter()
                            .filter(of_family)
                            .map(|ip| format!("\"{}\" . {ip}", p.host_if))
                    })
                    .collect(),
            },
        );
        for direction in [Direction::Ingress, Direction::Egress] {
            ruleset.maps.insert(
                format!("{}{s}", map_name(direction)),
                MapDef {
                    key_type: family.addr_type().to_owned(),
                    value_type: "verdict".to_owned(),
                    elements: maps.remove(&(direction, *family)).unwrap_or_default(),
                },
            );
        }
    }
    ruleset.base_chains.insert(
        BASE_CHAIN.to_owned(),
        BaseChain {
            hook: BASE_CHAIN_HOOK.to_owned(),
            rules: base_chain(&families),
        },
    );
    ruleset
}

/// Whether `pod` can be a peer: host-network pods are node traffic and a
/// terminated pod's address may already be another pod's.
fn is_peer(pod: &Pod) -> bool {
    !pod.host_network && !matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed)
}

/// `pod` as a peer: its model addresses, plus those the node reports for
/// it (`local`) that its status does not list yet.
fn peer_pod<'a>(pod: &'a Pod, local: Option<&LocalPod>) -> PeerPod<'a> {
    let extra = local.map_or(&[][..], |lp| lp.ips.as_slice());
    let ips = if extra.iter().all(|ip| pod.ips.contains(ip)) {
        Cow::Borrowed(pod.ips.as_slice())
    } else {
        let mut ips = pod.ips.clone();
        ips.extend(extra.iter().filter(|ip| !pod.ips.contains(ip)));
        Cow::Owned(ips)
    };
    PeerPod { pod, ips }
}

/// The base chain's rules (see the module documentation for why each).
fn base_chain(families: &[IpFamily]) -> Vec<String> {
    let pod_veth = format!("meta iifkind \"veth\" iifname \"{HOST_IF_PATTERN}\"");
    let mut rules = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        let (kw, s) = (family.keyword(), family.suffix());
        if families.contains(&family) {
            rules.push(format!(
                "{pod_veth} iifname . {kw} saddr != @pod_src{s} drop"
            ));
        } else {
            rules.push(format!("{pod_veth} meta nfproto {} drop", family.nfproto()));
        }
    }
    for family in families {
        let (kw, s) = (family.keyword(), family.suffix());
        for field in ["daddr", "saddr"] {
            rules.push(format!(
                "{kw} {field} @local_cidrs{s} {kw} {field} != @known{s} drop"
            ));
        }
    }
    rules.push("ct state established,related accept".to_owned());
    rules.push("ct state invalid drop".to_owned());
    for (direction, field) in [(Direction::Egress, "saddr"), (Direction::Ingress, "daddr")] {
        for family in families {
            let (kw, s) = (family.keyword(), family.suffix());
            rules.push(format!("{kw} {field} vmap @{}{s}", map_name(direction)));
        }
    }
    rules
}

fn map_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// The families the node has pods of: its pod CIDRs' and its pods'.
fn families(node: &NodeInputs, local: &[&LocalPod]) -> Vec<IpFamily> {
    let cidrs = node.pod_cidrs.iter().map(|n| IpFamily::of(n.addr()));
    let pods = local
        .iter()
        .flat_map(|p| p.ips.iter().map(|ip| IpFamily::of(*ip)));
    cidrs
        .chain(pods)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Whether `name` can be a Linux interface name and sits safely inside an
/// nft string literal.
fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && !name
            .chars()
            .any(|c| c == '"' || c == '/' || c == '\\' || c.is_whitespace() || c.is_control())
}

/// The evaluator's family, spelled for the table's names and rules.
impl NftFamily for IpFamily {
    fn is_v6(self) -> bool {
        matches!(self, Self::V6)
    }
}
