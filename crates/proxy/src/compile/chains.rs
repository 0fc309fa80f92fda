//! The chains of one Service port in one family: endpoint selection
//! ("pick") chains, the external-traffic chain and, for `ClientIP`
//! affinity, endpoint chains with the dynamic sets they refresh.
//!
//! Names are stable across endpoint changes where the chain's identity is
//! the Service port (pick and external chains: a new endpoint flushes and
//! refills one pick chain, nothing is renamed) and derived from content
//! for the endpoint chains of `ClientIP` Services.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use weft_model::{IpFamily, Protocol, SessionAffinity, TrafficPolicy};
use weft_nft::{NftFamily, short_hash};

use super::MARK_CHAIN;
use super::backends::{Backends, SLOT};
use super::endpoints::Target;
use crate::nft::SetDef;

/// What the chains of one Service port in one family are built from.
pub(crate) struct PortPlan<'a> {
    /// `namespace/name/protocol/port` plus family: the identity that names
    /// the port's chains and sets.
    pub key: String,
    /// A readable name part (`ns/name/tcp/http`).
    pub label: String,
    /// The family.
    pub family: IpFamily,
    /// The transport protocol.
    pub protocol: Protocol,
    /// Usable endpoints of the whole cluster.
    pub cluster: &'a [Target],
    /// The Service's affinity.
    pub affinity: SessionAffinity,
    /// `externalTrafficPolicy`.
    pub external_policy: TrafficPolicy,
}

/// Where traffic of a Service port goes: a chain name or a final verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `goto` this chain.
    Chain(String),
    /// No usable endpoint: reject at once.
    Reject,
    /// Endpoints exist, none of them usable from this node: drop (as
    /// kube-proxy does for `internalTrafficPolicy: Local` without a local
    /// endpoint).
    Drop,
}

/// Chains, sets and hairpin endpoints produced for the Service ports.
#[derive(Default)]
pub(crate) struct Output {
    /// Regular chains by name.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity sets by name.
    pub sets: BTreeMap<String, SetDef>,
    /// Every endpoint address: a connection from one of them DNATed to
    /// itself is hairpin traffic, masqueraded in postrouting.
    pub hairpin: BTreeSet<IpAddr>,
    /// Random choices that DNAT through a map of backends.
    pub backends: Backends,
}

impl PortPlan<'_> {
    /// The entry for internal traffic (cluster IPs): all endpoints, or the
    /// local ones for `internalTrafficPolicy: Local`.
    pub fn internal(&self, policy: TrafficPolicy, out: &mut Output) -> Entry {
        match policy {
            TrafficPolicy::Cluster => self.pick(Scope::Cluster, out),
            TrafficPolicy::Local => self.pick(Scope::Local, out),
        }
    }

    /// The entry for external traffic (node ports, external and load
    /// balancer IPs).
    pub fn external(&self, out: &mut Output) -> Entry {
        let Entry::Chain(cluster) = self.pick(Scope::Cluster, out) else {
            return Entry::Reject;
        };
        let mut rules = Vec::new();
        match self.external_policy {
            TrafficPolicy::Cluster => {
                rules.push(format!("jump {MARK_CHAIN}"));
                rules.push(format!("goto {cluster}"));
            }
            TrafficPolicy::Local => {
                let kw = self.family.keyword();
                let s = self.family.suffix();
                // Pods and the node itself are not "external": they use
                // every endpoint (kube-proxy's short-circuit), the node's
                // own traffic masqueraded so that replies come back.
                rules.push(format!("{kw} saddr @local_src{s} goto {cluster}"));
                rules.push(format!("fib saddr type local jump {MARK_CHAIN}"));
                rules.push(format!("fib saddr type local goto {cluster}"));
                // Without a local endpoint the client's traffic is dropped,
                // so that a load balancer's health check fails over.
                match self.pick(Scope::Local, out) {
                    Entry::Chain(local) => rules.push(format!("goto {local}")),
                    Entry::Reject | Entry::Drop => rules.push("drop".to_owned()),
                }
            }
        }
        let name = self.chain_name("ext");
        out.chains.insert(name.clone(), rules);
        Entry::Chain(name)
    }

    /// The chain picking one endpoint of `scope` at random (or the one a
    /// client has affinity to), with the endpoint chains it jumps to.
    fn pick(&self, scope: Scope, out: &mut Output) -> Entry {
        let targets: Vec<&Target> = self
            .cluster
            .iter()
            .filter(|t| scope == Scope::Cluster || t.local)
            .collect();
        if targets.is_empty() {
            return Entry::Reject;
        }
        let name = self.chain_name(scope.prefix());
        if out.chains.contains_key(&name) {
            return Entry::Chain(name);
        }
        let kw = self.family.keyword();
        let mut rules = Vec::new();
        // The action per endpoint: its affinity chain for a ClientIP
        // Service (clients with affinity jump there first), else the DNAT
        // itself (no chain per endpoint: at 100,000 endpoints the chains
        // alone cost seconds to load).
        let mut actions = Vec::with_capacity(targets.len());
        for target in &targets {
            out.hairpin.insert(target.ip);
            match self.affinity_set(target, out) {
                Some(set) => {
                    let chain = self.endpoint_chain(target, &set, out);
                    rules.push(format!("{kw} saddr @{set} goto {chain}"));
                    actions.push(format!("goto {chain}"));
                }
                None => actions.push(self.dnat(target)),
            }
        }
        // Without affinity, one rule looks the endpoint up in a shared map
        // of backends (see `backends`): far cheaper to load and to change
        // than a rule per endpoint.
        let plain = matches!(self.affinity, SessionAffinity::None);
        if plain && (2..=SLOT).contains(&targets.len()) {
            out.chains.insert(name.clone(), rules);
            let backends = targets.iter().map(|t| (t.ip, t.port)).collect();
            out.backends
                .push(name.clone(), self.family, self.protocol, backends);
            return Entry::Chain(name);
        }
        // Affinity (whose endpoint chains the choice must jump to), a single
        // endpoint, or more than a map slot holds: a uniform choice without
        // anonymous maps: rule k (of n) matches
        // with probability 1/(n-k), the last one always (the iptables
        // "statistic" cascade). An inline `numgen … vmap { … }` per Service,
        // as kube-proxy's nftables mode writes, measured 284 s against 7 s
        // to load 10,000 Services × 10 endpoints here (notes/NFTABLES.md:
        // anonymous sets dominate the kernel's cost). Only a connection's
        // first packet walks these rules, and only its own Service's.
        let n = actions.len();
        for (k, action) in actions.into_iter().enumerate() {
            if k + 1 == n {
                rules.push(action);
            } else {
                rules.push(format!("numgen random mod {} == 0 {action}", n - k));
            }
        }
        out.chains.insert(name.clone(), rules);
        Entry::Chain(name)
    }

    /// The DNAT statement to `target`.
    fn dnat(&self, target: &Target) -> String {
        let to = match target.ip {
            IpAddr::V4(ip) => format!("{ip}:{}", target.port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", target.port),
        };
        format!(
            "meta l4proto {} dnat {} to {to}",
            protocol_name(self.protocol),
            self.family.keyword()
        )
    }

    /// The dynamic set of clients with affinity to `target`, for a
    /// `ClientIP` Service (one per endpoint, as kube-proxy: an endpoint that
    /// goes away takes its clients' affinity with it, nobody else's).
    fn affinity_set(&self, target: &Target, out: &mut Output) -> Option<String> {
        let SessionAffinity::ClientIp { .. } = self.affinity else {
            return None;
        };
        let name = format!(
            "aff{}-{}",
            self.family.suffix(),
            short_hash(&format!("{}|{}|{}", self.key, target.ip, target.port))
        );
        out.sets.entry(name.clone()).or_insert_with(|| SetDef {
            typ: self.family.addr_type().to_owned(),
            flags: vec!["dynamic".to_owned(), "timeout".to_owned()],
            elements: Default::default(),
        });
        Some(name)
    }

    /// The chain of a `ClientIP` Service's endpoint: refresh the client's
    /// affinity, then DNAT.
    fn endpoint_chain(&self, target: &Target, set: &str, out: &mut Output) -> String {
        let kw = self.family.keyword();
        let timeout = match self.affinity {
            SessionAffinity::ClientIp { timeout_seconds } => timeout_seconds,
            SessionAffinity::None => 0,
        };
        let rules = vec![
            format!("update @{set} {{ {kw} saddr timeout {timeout}s }}"),
            self.dnat(target),
        ];
        let name = format!("ep-{}", short_hash(&rules.join("\n")));
        out.chains.entry(name.clone()).or_insert(rules);
        name
    }

    fn chain_name(&self, prefix: &str) -> String {
        format!(
            "{prefix}{}-{}-{}",
            self.family.suffix(),
            &short_hash(&self.key)[..8],
            self.label
        )
    }
}

/// Which endpoints a pick chain chooses from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Cluster,
    Local,
}

impl Scope {
    fn prefix(self) -> &'static str {
        match self {
            Self::Cluster => "svc",
            Self::Local => "local",
        }
    }
}

/// The protocol as nft names it.
pub(crate) use weft_nft::protocol_keyword as protocol_name;
