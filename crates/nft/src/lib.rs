//! One nftables table as a plain value ([`Ruleset`]) and its rendering to
//! `nft -f` text: whole ([`render_full`]) or as the difference between two
//! rulesets ([`render_delta`]), or that difference as a netlink
//! transaction ([`delta_batch`]) when it holds only element and rule
//! changes of the shapes it encodes.
//!
//! Shared by weft's tables that are compiled from the cluster and updated in
//! place (`inet weft-policy`, `inet weft-proxy`): each table is replaced or
//! updated on its own schedule, so an update of one never rewrites another.
//! The [`NftFamily`] helper and [`short_hash`] are the spelling both
//! compilers use for families and content-derived names.

mod batch;
mod change;
mod delta;
mod family;
mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use sha2::{Digest, Sha256};

pub use batch::{Unsupported, change_batch, delta_batch};
pub use change::{Change, MapElements, SetElements, diff};
pub use delta::{render_change, render_delta};
pub use family::{NftFamily, protocol_keyword};
pub use render::render_full;
/// The transaction [`delta_batch`] returns and the socket that commits it,
/// so that callers need no direct dependency on `weft_netlink`.
pub use weft_netlink::{NftBatch, NftSocket};

/// One table: hooked base chains, named sets, verdict maps and regular
/// chains. Rules refer to sets and maps by name (`@name`), maps and rules to
/// chains (`jump name`, `goto name`).
///
/// Plain data, so two rulesets compare and diff cheaply; names are derived
/// from content by the compilers, so an unchanged piece keeps its name.
/// A name is either a base chain or a regular chain, never both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// The table's family and name as nft spells them (`inet weft-policy`).
    pub table: String,
    /// Chains attached to a netfilter hook, by name. Rendered after
    /// everything else, so their rules may refer to any set, map or chain.
    pub base_chains: BTreeMap<String, BaseChain>,
    /// Named sets by name.
    pub sets: BTreeMap<String, SetDef>,
    /// Named verdict maps by name.
    pub maps: BTreeMap<String, MapDef>,
    /// Regular chains by name: their rules, in order, as `nft` rule text.
    pub chains: BTreeMap<String, Vec<String>>,
}

/// A chain attached to a netfilter hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseChain {
    /// The chain's `type … hook … priority …; policy …;` line.
    pub hook: String,
    /// Its rules, in order, as `nft` rule text.
    pub rules: Vec<String>,
}

/// A named set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetDef {
    /// The key type (`ipv4_addr`, `ifname . ipv4_addr`, ...).
    pub typ: String,
    /// Set flags (`interval`); empty for a plain hash set.
    pub flags: Vec<String>,
    /// Elements as `nft` text (`10.0.0.1`, `"weft0a1b" . 10.0.0.1`,
    /// `10.0.0.0-10.0.0.127`). Interval elements never overlap.
    pub elements: BTreeSet<String>,
}

/// A named map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapDef {
    /// The key type (`ipv4_addr`), or `typeof` and an expression
    /// (`typeof numgen random mod 1`) for keys that no named type covers
    /// (nft refuses a `mark` map for a `numgen` key); then
    /// [`MapDef::value_type`] is an expression too (`ip daddr . tcp dport`).
    pub key_type: String,
    /// The value type (`verdict`), or an expression after a `typeof` key.
    pub value_type: String,
    /// Key to value, both as `nft` text (`10.0.0.1` → `jump in_0a1b`).
    pub elements: BTreeMap<String, String>,
}

/// The size of a ruleset, for logs and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Named sets.
    pub sets: usize,
    /// Named maps.
    pub maps: usize,
    /// Elements of all sets and maps.
    pub elements: usize,
    /// Chains, base chains included.
    pub chains: usize,
    /// Rules of all chains, base chains included.
    pub rules: usize,
}

impl Ruleset {
    /// An empty ruleset for `table` (family and name, `inet weft-policy`).
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            base_chains: BTreeMap::new(),
            sets: BTreeMap::new(),
            maps: BTreeMap::new(),
            chains: BTreeMap::new(),
        }
    }

    /// Counts sets, maps, elements, chains and rules.
    pub fn stats(&self) -> Stats {
        Stats {
            sets: self.sets.len(),
            maps: self.maps.len(),
            elements: self.sets.values().map(|s| s.elements.len()).sum::<usize>()
                + self.maps.values().map(|m| m.elements.len()).sum::<usize>(),
            chains: self.chains.len() + self.base_chains.len(),
            rules: self.chains.values().map(Vec::len).sum::<usize>()
                + self
                    .base_chains
                    .values()
                    .map(|c| c.rules.len())
                    .sum::<usize>(),
        }
    }
}

impl SetDef {
    /// The set's declaration without elements, as `add set` takes it.
    fn declaration(&self) -> String {
        let mut out = format!("type {};", self.typ);
        if !self.flags.is_empty() {
            let _ = write!(out, " flags {};", self.flags.join(","));
        }
        out
    }
}

impl MapDef {
    /// The map's declaration without elements, as `add map` takes it.
    fn declaration(&self) -> String {
        format!("{};", self.type_line())
    }

    /// `type key : value`, or `typeof key : value` for a `typeof` key.
    fn type_line(&self) -> String {
        if self.key_type.starts_with("typeof ") {
            format!("{} : {}", self.key_type, self.value_type)
        } else {
            format!("type {} : {}", self.key_type, self.value_type)
        }
    }

    /// Whether the values are verdicts (`jump`, `goto`): such a map must
    /// come after the chains it names, a map of data may come first.
    fn is_verdict(&self) -> bool {
        self.value_type == "verdict"
    }

    /// Elements as `key : value` text.
    fn element_texts<'a>(&'a self, keys: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        keys.into_iter()
            .filter_map(|k| self.elements.get(k).map(|v| format!("{k} : {v}")))
            .collect()
    }
}

/// A short, stable name part: the first 8 bytes of SHA-256 in hex. 64 bits
/// keep collisions out of reach for the sets and chains of one table.
pub fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..8]
        .iter()
        .fold(String::with_capacity(16), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests;
