//! Indexes over the peer pods, so that a selector peer's members come from
//! a few small candidate lists instead of a scan of every pod in the
//! cluster (which, once per distinct selector, was most of a compile at
//! 10,000 pods).
//!
//! The indexes only narrow the candidates: every candidate is still checked
//! with the evaluator's [`selector_peer_matches`], so a set holds exactly
//! the pods the evaluator accepts. Narrowing is sound because a selector
//! peer matches only pods of the namespaces it names (its own without a
//! namespace selector) and, for each `matchLabels` pair or `In`
//! requirement of its pod selector, only pods carrying one of those values.

use std::borrow::Cow;
use std::collections::HashMap;

use weft_model::{LabelSelector, Labels, NetworkPolicy, Operator};

use super::peers::{PeerPod, canonical};
use crate::evaluate::selector_peer_matches;

/// How many pods of a label's list cost one selector check of a pod.
const LIST_TO_CHECK_COST: usize = 16;

/// Pods by namespace, and (built on first use) by label value.
pub(crate) struct PodIndex<'a> {
    pods: &'a [PeerPod<'a>],
    /// The namespace (index into `namespaces`) of each pod.
    pod_namespace: Vec<usize>,
    namespaces: Vec<NamespacePods>,
    namespace_ids: HashMap<&'a str, usize>,
    /// Namespaces a namespace selector matches, by its canonical text:
    /// many peers share a few namespace selectors.
    namespace_matches: HashMap<String, Vec<usize>>,
    /// Label key → value → pods carrying it, ascending; a key's map is
    /// built the first time a selector asks for it.
    labels: HashMap<String, HashMap<&'a str, Vec<usize>>>,
}

/// One namespace that has peer pods.
struct NamespacePods {
    /// Its labels, the name label included.
    labels: Labels,
    /// Its pods, ascending.
    pods: Vec<usize>,
}

impl<'a> PodIndex<'a> {
    /// Indexes `pods`; `namespace_labels` gives a namespace's labels (the
    /// name label included) and is asked once per namespace.
    pub fn new(pods: &'a [PeerPod<'a>], namespace_labels: impl Fn(&str) -> Labels) -> Self {
        let mut namespaces: Vec<NamespacePods> = Vec::new();
        let mut namespace_ids: HashMap<&'a str, usize> = HashMap::new();
        let mut pod_namespace = Vec::with_capacity(pods.len());
        for (i, peer) in pods.iter().enumerate() {
            let name = peer.pod.namespace.as_str();
            let id = *namespace_ids.entry(name).or_insert_with(|| {
                namespaces.push(NamespacePods {
                    labels: namespace_labels(name),
                    pods: Vec::new(),
                });
                namespaces.len() - 1
            });
            namespaces[id].pods.push(i);
            pod_namespace.push(id);
        }
        Self {
            pods,
            pod_namespace,
            namespaces,
            namespace_ids,
            namespace_matches: HashMap::new(),
            labels: HashMap::new(),
        }
    }

    /// The pods (indices into the indexed slice, ascending) that a selector
    /// peer of a policy in `policy_namespace` matches.
    pub fn selector_members(
        &mut self,
        policy_namespace: &str,
        namespace_selector: Option<&LabelSelector>,
        pod_selector: Option<&LabelSelector>,
    ) -> Vec<usize> {
        let namespaces = match namespace_selector {
            None => self
                .namespace_ids
                .get(policy_namespace)
                .map(|id| vec![*id])
                .unwrap_or_default(),
            Some(s) => self.matching_namespaces(s),
        };
        let in_namespaces: usize = namespaces
            .iter()
            .map(|n| self.namespaces[*n].pods.len())
            .sum();
        let by_label = pod_selector.and_then(|s| self.label_candidates(s, in_namespaces));
        let candidates = match by_label {
            Some(pods) => {
                let mut wanted = vec![false; self.namespaces.len()];
                for n in &namespaces {
                    wanted[*n] = true;
                }
                pods.into_iter()
                    .filter(|p| wanted[self.pod_namespace[*p]])
                    .collect()
            }
            None => {
                let mut pods: Vec<usize> = namespaces
                    .iter()
                    .flat_map(|n| self.namespaces[*n].pods.iter().copied())
                    .collect();
                pods.sort_unstable();
                pods
            }
        };
        // The candidates are exactly the pods of the matching namespaces
        // (decided once per namespace above), so only the pod selector is
        // left to check; the evaluator's predicate must agree.
        candidates
            .into_iter()
            .filter(|p| {
                let pod = self.pods[*p].pod;
                let matches =
                    !pod.host_network && pod_selector.is_none_or(|s| s.matches(&pod.labels));
                debug_assert_eq!(
                    matches,
                    selector_peer_matches(
                        policy_namespace,
                        namespace_selector,
                        pod_selector,
                        pod,
                        |_| Cow::Borrowed(&self.namespaces[self.pod_namespace[*p]].labels),
                    ),
                    "index and evaluator disagree on {}/{}",
                    pod.namespace,
                    pod.name
                );
                matches
            })
            .collect()
    }

    /// The namespaces (with pods) whose labels `selector` matches.
    fn matching_namespaces(&mut self, selector: &LabelSelector) -> Vec<usize> {
        let namespaces = &self.namespaces;
        self.namespace_matches
            .entry(canonical(selector))
            .or_insert_with(|| {
                (0..namespaces.len())
                    .filter(|n| selector.matches(&namespaces[*n].labels))
                    .collect()
            })
            .clone()
    }

    /// The pods that can match `selector` by its most selective indexable
    /// term, ascending; `None` when none is indexable or its pods are too
    /// many next to `bound` (the candidates the namespaces give).
    fn label_candidates(&mut self, selector: &LabelSelector, bound: usize) -> Option<Vec<usize>> {
        // Each term as (key, the values it accepts).
        let terms: Vec<(&str, Vec<&str>)> = selector
            .match_labels
            .iter()
            .map(|(k, v)| (k, vec![v]))
            .chain(
                selector
                    .match_expressions
                    .iter()
                    .filter(|r| r.op == Operator::In)
                    .map(|r| (&*r.key, r.values.iter().map(|v| &**v).collect())),
            )
            .collect();
        for (key, _) in &terms {
            self.label_key(key);
        }
        let postings = |(key, values): &(&str, Vec<&str>)| {
            let by_value = &self.labels[*key];
            values
                .iter()
                .filter_map(|v| by_value.get(*v))
                .collect::<Vec<&Vec<usize>>>()
        };
        let term = terms
            .iter()
            .min_by_key(|t| postings(t).iter().map(|p| p.len()).sum::<usize>())?;
        let lists = postings(term);
        // Filtering a list by namespace is a table lookup per pod, far
        // cheaper than a full selector check per namespace candidate: the
        // list wins unless it is much longer.
        if lists.iter().map(|p| p.len()).sum::<usize>() > bound.saturating_mul(LIST_TO_CHECK_COST) {
            return None;
        }
        // A pod has one value per key, so the lists are disjoint.
        let mut pods: Vec<usize> = lists.into_iter().flatten().copied().collect();
        pods.sort_unstable();
        Some(pods)
    }

    /// Builds the value → pods map of `key` unless it exists.
    fn label_key(&mut self, key: &str) {
        if self.labels.contains_key(key) {
            return;
        }
        let mut by_value: HashMap<&'a str, Vec<usize>> = HashMap::new();
        for (i, peer) in self.pods.iter().enumerate() {
            if let Some(value) = peer.pod.labels.get(key) {
                by_value.entry(value).or_default().push(i);
            }
        }
        self.labels.insert(key.to_owned(), by_value);
    }
}

/// The policies of one namespace, indexed (once a second pod asks) by a
/// label their pod selector requires, so that a pod's selecting policies
/// come from its own labels' lists rather than from testing every policy
/// of the namespace.
#[derive(Default)]
pub(crate) struct NamespacePolicies<'v> {
    policies: Vec<&'v NetworkPolicy>,
    /// Built on the second query: for a namespace with one local pod, the
    /// index would cost more than the one scan it saves.
    index: Option<PolicyLabels<'v>>,
    queried: bool,
}

/// Positions in [`NamespacePolicies::policies`] by required label.
struct PolicyLabels<'v> {
    /// Policies whose pod selector requires this label (its first
    /// `matchLabels` pair): only pods carrying it can be selected.
    by_label: HashMap<(&'v str, &'v str), Vec<usize>>,
    /// Policies without `matchLabels`: tested against every pod.
    unindexed: Vec<usize>,
}

impl<'v> NamespacePolicies<'v> {
    /// Adds a policy of the namespace.
    pub fn push(&mut self, policy: &'v NetworkPolicy) {
        self.policies.push(policy);
    }

    /// The policies whose pod selector matches `labels`, in the order they
    /// were added.
    pub fn selecting(&mut self, labels: &Labels) -> Vec<&'v NetworkPolicy> {
        let policies = &self.policies;
        if !std::mem::replace(&mut self.queried, true) {
            return policies
                .iter()
                .filter(|p| p.pod_selector.matches(labels))
                .copied()
                .collect();
        }
        let index = self
            .index
            .get_or_insert_with(|| PolicyLabels::new(policies));
        let mut candidates = index.unindexed.clone();
        for (k, v) in labels {
            if let Some(list) = index.by_label.get(&(k, v)) {
                candidates.extend_from_slice(list);
            }
        }
        // Each policy is in one list only, so sorting is all it takes.
        candidates.sort_unstable();
        candidates
            .into_iter()
            .map(|i| policies[i])
            .filter(|p| p.pod_selector.matches(labels))
            .collect()
    }
}

impl<'v> PolicyLabels<'v> {
    fn new(policies: &[&'v NetworkPolicy]) -> Self {
        let mut index = Self {
            by_label: HashMap::new(),
            unindexed: Vec::new(),
        };
        for (i, policy) in policies.iter().enumerate() {
            match policy.pod_selector.match_labels.iter().next() {
                Some((k, v)) => index.by_label.entry((k, v)).or_default().push(i),
                None => index.unindexed.push(i),
            }
        }
        index
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
