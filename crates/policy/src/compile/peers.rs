//! The shared named sets that rules match peers and named ports against.
//!
//! Sets are keyed by content, not by the policy that uses them: every rule
//! of every pod chain with an equal selector pair (or `ipBlock`, or named
//! port) refers to one set. That keeps the number of named sets, the
//! expensive dimension of an nftables table (notes/NFTABLES.md), at the
//! number of distinct peers rather than of rules. A set's name is a hash of
//! the definition (never of its elements), so pods coming and going change
//! elements only, and an unchanged peer keeps its set across recompiles.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::net::IpAddr;

use weft_model::{IpBlock, LabelSelector, Pod, Protocol};

use super::interval::block_elements;
use crate::evaluate::selector_peer_matches;
use crate::nft::SetDef;
use crate::view::IpFamily;
use weft_nft::{NftFamily, short_hash};

/// A pod that can be a peer, with the addresses the ruleset knows it by.
#[derive(Debug)]
pub(crate) struct PeerPod<'a> {
    /// The pod as the model has it.
    pub pod: &'a Pod,
    /// Its addresses: the model's, plus what the node reports for local
    /// pods whose status has not caught up yet.
    pub ips: Vec<IpAddr>,
}

/// Builds the shared sets as rules ask for them, each set computed once.
pub(crate) struct Peers<'a> {
    families: &'a [IpFamily],
    pods: &'a [PeerPod<'a>],
    namespace_labels: HashMap<&'a str, BTreeMap<String, String>>,
    /// The sets built so far, by name.
    pub sets: BTreeMap<String, SetDef>,
}

impl<'a> Peers<'a> {
    /// Peers among `pods`, with sets for `families`; `namespace_labels`
    /// gives a namespace's labels (the name label included).
    pub fn new(
        families: &'a [IpFamily],
        pods: &'a [PeerPod<'a>],
        namespace_labels: impl Fn(&str) -> BTreeMap<String, String>,
    ) -> Self {
        let namespace_labels = pods
            .iter()
            .map(|p| p.pod.namespace.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|ns| (ns, namespace_labels(ns)))
            .collect();
        Self {
            families,
            pods,
            namespace_labels,
            sets: BTreeMap::new(),
        }
    }

    /// The sets (one per family) of the pods a selector peer of a policy in
    /// `policy_namespace` matches.
    pub fn selector(
        &mut self,
        policy_namespace: &str,
        namespace_selector: Option<&LabelSelector>,
        pod_selector: Option<&LabelSelector>,
    ) -> Vec<(IpFamily, String)> {
        // The policy's namespace matters only without a namespace selector;
        // leaving it out otherwise lets policies of different namespaces
        // share the set.
        let mut key = String::from("selector\n");
        match namespace_selector {
            None => {
                let _ = writeln!(key, "namespace={policy_namespace}");
            }
            Some(s) => {
                let _ = writeln!(key, "namespaces={}", canonical(s));
            }
        }
        if let Some(s) = pod_selector {
            let _ = writeln!(key, "pods={}", canonical(s));
        }
        let base = format!("s_{}", short_hash(&key));
        if !self
            .sets
            .contains_key(&self.name(&base, self.families.first()))
        {
            let labels = &self.namespace_labels;
            let members: Vec<&PeerPod<'_>> = self
                .pods
                .iter()
                .filter(|p| {
                    selector_peer_matches(
                        policy_namespace,
                        namespace_selector,
                        pod_selector,
                        p.pod,
                        |ns| Cow::Borrowed(&labels[ns]),
                    )
                })
                .collect();
            for family in self.families {
                let elements = members
                    .iter()
                    .flat_map(|p| p.ips.iter())
                    .filter(|ip| IpFamily::of(**ip) == *family)
                    .map(ToString::to_string)
                    .collect();
                self.insert(&base, *family, family.addr_type(), elements);
            }
        }
        self.families
            .iter()
            .map(|f| (*f, self.name(&base, Some(f))))
            .collect()
    }

    /// The interval set of an `ipBlock`; `None` when the node has no pods
    /// of the block's family (nothing it could match is routed here).
    pub fn ip_block(&mut self, block: &IpBlock) -> Option<(IpFamily, String)> {
        let family = IpFamily::of(block.cidr.addr());
        if !self.families.contains(&family) {
            return None;
        }
        let mut key = format!("ipblock\n{}\n", block.cidr.trunc());
        let mut except: Vec<String> = block.except.iter().map(|e| e.trunc().to_string()).collect();
        except.sort();
        key.push_str(&except.join(","));
        // The family is in the CIDR already; no suffix needed.
        let name = format!("b_{}", short_hash(&key));
        if !self.sets.contains_key(&name) {
            let elements = block_elements(block).into_iter().collect();
            self.sets.insert(
                name.clone(),
                SetDef {
                    typ: family.addr_type().to_owned(),
                    flags: vec!["interval".to_owned()],
                    elements,
                },
            );
        }
        Some((family, name))
    }

    /// The sets (one per family) of `address . protocol . port` of every
    /// pod declaring a container port `name` for `protocol`: an egress rule
    /// with a named port resolves it per destination pod through them.
    pub fn named_port(&mut self, name: &str, protocol: Protocol) -> Vec<(IpFamily, String)> {
        let key = format!("named-port\n{name}\n{}", protocol_name(protocol));
        let base = format!("p_{}", short_hash(&key));
        if !self
            .sets
            .contains_key(&self.name(&base, self.families.first()))
        {
            for family in self.families {
                let mut elements = BTreeSet::new();
                for peer in self.pods {
                    let ports =
                        peer.pod.ports.iter().filter(|cp| {
                            cp.name.as_deref() == Some(name) && cp.protocol == protocol
                        });
                    for cp in ports {
                        for ip in peer.ips.iter().filter(|ip| IpFamily::of(**ip) == *family) {
                            elements.insert(format!(
                                "{ip} . {} . {}",
                                protocol_name(protocol),
                                cp.port
                            ));
                        }
                    }
                }
                let typ = format!("{} . inet_proto . inet_service", family.addr_type());
                self.insert(&base, *family, &typ, elements);
            }
        }
        self.families
            .iter()
            .map(|f| (*f, self.name(&base, Some(f))))
            .collect()
    }

    /// Adds a plain (hash) set of one family.
    fn insert(&mut self, base: &str, family: IpFamily, typ: &str, elements: BTreeSet<String>) {
        self.sets.insert(
            self.name(base, Some(&family)),
            SetDef {
                typ: typ.to_owned(),
                flags: Vec::new(),
                elements,
            },
        );
    }

    /// A per-family set's name: the base and the family's digit.
    fn name(&self, base: &str, family: Option<&IpFamily>) -> String {
        match family {
            Some(f) => format!("{base}_{}", f.suffix()),
            None => base.to_owned(),
        }
    }
}

/// The protocol as nft names it.
pub(crate) use weft_nft::protocol_keyword as protocol_name;

/// A selector in a canonical text form: equal selectors (whatever the
/// order of their expressions) give equal text.
fn canonical(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut expressions: Vec<String> = selector
        .match_expressions
        .iter()
        .map(|r| {
            let values: Vec<&str> = r.values.iter().map(String::as_str).collect();
            format!("{} {} ({})", r.key, r.op.as_str(), values.join(","))
        })
        .collect();
    expressions.sort();
    expressions.dedup();
    parts.extend(expressions);
    parts.join(";")
}
