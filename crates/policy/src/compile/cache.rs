//! [`Compiler`]: the compiler with a memory, so that one policy change
//! costs what it touches rather than a rebuild of every peer set.
//!
//! The node's largest sets are its peer sets: every pod a selector peer
//! matches, cluster-wide, and every pod declaring a named port (10,000
//! elements at 10,000 pods). They depend on the policies only through
//! their definitions, which their names hash ([`super::peers`]), and
//! otherwise on the peer pods and namespaces alone. So while a digest of
//! those inputs is unchanged, a set of a given name has the elements it
//! had last time, and is taken from the previous compile instead of being
//! rebuilt; a policy change then computes only sets no policy asked for
//! before. Any change to a pod or namespace changes the digest and every
//! set is rebuilt, exactly as [`super::compile`] does: the result is
//! always equal to a fresh compile.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use weft_model::Namespace;

use super::peers::PeerPod;
use crate::nft::{Ruleset, SetDef};
use crate::view::{IpFamily, PolicyView};

use super::NodeInputs;

/// Compiles a node's table like [`super::compile`], reusing the peer sets
/// of its previous compile while the cluster's pods and namespaces are
/// unchanged. Keep one per node table (the agent keeps it with the table
/// it last applied).
#[derive(Debug, Default)]
pub struct Compiler {
    /// Keys the digest: random per compiler, so that no crafted object can
    /// be chosen to collide with another.
    keys: RandomState,
    /// The previous compile's peer sets and the digest of their inputs.
    last: Option<Reusable>,
}

/// Peer sets of one compile, by name, valid for inputs with `digest`.
#[derive(Debug)]
struct Reusable {
    digest: u64,
    sets: HashMap<String, SetDef>,
}

impl Compiler {
    /// A compiler with nothing to reuse yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node's table for `view` and `node`; equal to
    /// [`super::compile`]`(view, node)`.
    pub fn compile(&mut self, view: &PolicyView, node: &NodeInputs) -> Ruleset {
        let keys = &self.keys;
        let mut last = self.last.take();
        let mut digest = None;
        let ruleset = super::compile_with(view, node, |families, pods| {
            let d = inputs_digest(keys, families, &view.namespaces, pods);
            digest = Some(d);
            // Sets of other inputs are stale: dropped, not offered.
            last.take()
                .filter(|r| r.digest == d)
                .map(|r| r.sets)
                .unwrap_or_default()
        });
        self.last = digest.map(|digest| Reusable {
            digest,
            sets: ruleset
                .sets
                .iter()
                .filter(|(name, _)| is_peer_set(name))
                .map(|(name, set)| (name.clone(), set.clone()))
                .collect(),
        });
        ruleset
    }

    /// Forgets the previous compile (the next one rebuilds every set).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// Whether a set is one of the peer sets the cache keeps (named by
/// [`super::peers`]: `s_…` selector peers, `p_…` named ports; `b_…` ipBlocks
/// depend on their definition alone and are cheap to rebuild).
fn is_peer_set(name: &str) -> bool {
    name.starts_with("s_") || name.starts_with("p_")
}

/// A digest of everything peer sets are computed from besides their own
/// definitions: the families, the namespaces (labels), and every peer
/// pod's namespace, labels, addresses and ports, in order.
///
/// 64 bits of SipHash under a per-compiler random key: two different
/// inputs collide with probability 2^-64 per compile and cannot be made
/// to collide on purpose; comparing the inputs themselves would mean
/// keeping a second copy of every pod.
fn inputs_digest(
    keys: &RandomState,
    families: &[IpFamily],
    namespaces: &[Namespace],
    pods: &[PeerPod<'_>],
) -> u64 {
    let mut h = keys.build_hasher();
    families.hash(&mut h);
    namespaces.len().hash(&mut h);
    for ns in namespaces {
        ns.name.hash(&mut h);
        ns.labels.hash(&mut h);
    }
    pods.len().hash(&mut h);
    for peer in pods {
        let pod = peer.pod;
        pod.namespace.hash(&mut h);
        pod.name.hash(&mut h);
        pod.labels.hash(&mut h);
        pod.host_network.hash(&mut h);
        peer.ips.hash(&mut h);
        pod.ports.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
