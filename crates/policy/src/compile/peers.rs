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

use weft_model::{IpBlock, LabelSelector, Labels, Pod, Protocol};

use super::index::PodIndex;
use super::interval::block_elements;
use crate::nft::SetDef;
use crate::view::IpFamily;
use weft_nft::{NftFamily, short_hash};

/// A pod that can be a peer, with the addresses the ruleset knows it by.
#[derive(Debug)]
pub(crate) struct PeerPod<'a> {
    /// The pod as the model has it.
    pub pod: &'a Pod,
    /// Its addresses: the model's, plus what the node reports for local
    /// pods whose status has not caught up yet (borrowed when there is
    /// nothing to add, which is almost every pod).
    pub ips: Cow<'a, [IpAddr]>,
}

/// A namespace's labels, the name label included.
pub(crate) type NamespaceLabels<'a> = Box<dyn Fn(&str) -> Labels + 'a>;

/// Builds the shared sets as rules ask for them, each set computed once.
pub(crate) struct Peers<'a> {
    families: &'a [IpFamily],
    pods: &'a [PeerPod<'a>],
    namespace_labels: NamespaceLabels<'a>,
    /// Built when a selector set is first computed rather than reused:
    /// indexing every pod is most of the cost of a set.
    index: Option<PodIndex<'a>>,
    /// Sets of an earlier compile with the same peer inputs
    /// ([`super::Compiler`]), taken by name instead of being computed.
    reusable: HashMap<String, SetDef>,
    /// Selector peers' sets by the addresses of the policy namespace and
    /// selectors they were asked for ([`Peers::selector`]).
    by_site: HashMap<[usize; 3], Vec<(IpFamily, String)>>,
    /// The sets built so far, by name.
    pub sets: BTreeMap<String, SetDef>,
}

impl<'a> Peers<'a> {
    /// Peers among `pods`, with sets for `families`; `namespace_labels`
    /// gives a namespace's labels (the name label included); `reusable`
    /// holds sets computed from these same pods and namespaces before.
    pub fn new(
        families: &'a [IpFamily],
        pods: &'a [PeerPod<'a>],
        namespace_labels: NamespaceLabels<'a>,
        reusable: HashMap<String, SetDef>,
    ) -> Self {
        Self {
            families,
            pods,
            namespace_labels,
            index: None,
            reusable,
            by_site: HashMap::new(),
            sets: BTreeMap::new(),
        }
    }

    /// Moves the sets of every family of `base` over from
    /// [`Self::reusable`]; false (and nothing moved) unless all are there.
    fn reuse(&mut self, base: &str) -> bool {
        let names: Vec<String> = self
            .families
            .iter()
            .map(|f| self.name(base, Some(f)))
            .collect();
        if !names.iter().all(|n| self.reusable.contains_key(n)) {
            return false;
        }
        for name in names {
            if let Some(set) = self.reusable.remove(&name) {
                self.sets.insert(name, set);
            }
        }
        true
    }

    /// The sets (one per family) of the pods a selector peer of a policy in
    /// `policy_namespace` matches.
    pub fn selector(
        &mut self,
        policy_namespace: &'a str,
        namespace_selector: Option<&'a LabelSelector>,
        pod_selector: Option<&'a LabelSelector>,
    ) -> Vec<(IpFamily, String)> {
        // Many local pods share a policy: its peers' sets are looked up
        // once by where the selectors live. The arguments outlive `self`
        // (`'a`), so no address is reused while the cache exists: equal
        // addresses mean the same, unchanged, peer.
        let site = [
            policy_namespace.as_ptr() as usize,
            namespace_selector.map_or(0, |s| std::ptr::from_ref(s) as usize),
            pod_selector.map_or(0, |s| std::ptr::from_ref(s) as usize),
        ];
        if let Some(sets) = self.by_site.get(&site) {
            return sets.clone();
        }
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
            && !self.reuse(&base)
        {
            let (pods, namespace_labels) = (self.pods, &self.namespace_labels);
            let members: Vec<&PeerPod<'_>> = self
                .index
                .get_or_insert_with(|| PodIndex::new(pods, namespace_labels))
                .selector_members(policy_namespace, namespace_selector, pod_selector)
                .into_iter()
                .map(|i| &self.pods[i])
                .collect();
            for family in self.families {
                let mut text = Text::default();
                let elements = members
                    .iter()
                    .flat_map(|p| p.ips.iter())
                    .filter(|ip| IpFamily::of(**ip) == *family)
                    .map(|ip| text.of(format_args!("{ip}")))
                    .collect();
                self.insert(&base, *family, family.addr_type(), elements);
            }
        }
        let sets: Vec<(IpFamily, String)> = self
            .families
            .iter()
            .map(|f| (*f, self.name(&base, Some(f))))
            .collect();
        self.by_site.insert(site, sets.clone());
        sets
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
            && !self.reuse(&base)
        {
            for family in self.families {
                let proto = protocol_name(protocol);
                // Collected first: a `BTreeSet` built from a whole batch
                // sorts once and fills its nodes in order.
                let mut text = Text::default();
                let mut elements: Vec<String> = Vec::new();
                for peer in self.pods {
                    let ports =
                        peer.pod.ports.iter().filter(|cp| {
                            cp.name.as_deref() == Some(name) && cp.protocol == protocol
                        });
                    for cp in ports {
                        for ip in peer.ips.iter().filter(|ip| IpFamily::of(**ip) == *family) {
                            elements.push(text.of(format_args!("{ip} . {proto} . {}", cp.port)));
                        }
                    }
                }
                let elements = elements.into_iter().collect();
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

/// Formats set elements through one reused buffer, so that each element
/// is allocated once at its exact length: `format!` grows its string from
/// a guess, a reallocation per element (and spare capacity kept in the
/// ruleset) that showed in profiles of sets with thousands of elements.
#[derive(Default)]
struct Text(String);

impl Text {
    fn of(&mut self, args: std::fmt::Arguments<'_>) -> String {
        self.0.clear();
        let _ = self.0.write_fmt(args);
        self.0.as_str().to_owned()
    }
}

/// The protocol as nft names it.
pub(crate) use weft_nft::protocol_keyword as protocol_name;

/// A selector in a canonical text form: equal selectors (whatever the
/// order of their expressions) give equal text.
pub(super) fn canonical(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut expressions: Vec<String> = selector
        .match_expressions
        .iter()
        .map(|r| {
            let values: Vec<&str> = r.values.iter().map(|v| &**v).collect();
            format!("{} {} ({})", r.key, r.op.as_str(), values.join(","))
        })
        .collect();
    expressions.sort();
    expressions.dedup();
    parts.extend(expressions);
    parts.join(";")
}
