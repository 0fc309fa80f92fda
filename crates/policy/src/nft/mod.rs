//! The policy table as a plain value ([`Ruleset`]) and its rendering to
//! `nft -f` text: whole ([`render_full`]) or as the difference between two
//! rulesets ([`render_delta`]).
//!
//! weft's policy lives in its own table, [`TABLE`], apart from the agent's
//! masquerade table `inet weft`, so that each is replaced or updated on its
//! own schedule and a policy update never rewrites unrelated state.

mod delta;
mod render;

use std::collections::{BTreeMap, BTreeSet};

pub use delta::render_delta;
pub use render::render_full;

/// The table's family and name.
pub const TABLE: &str = "inet weft-policy";
/// The one base chain; every other chain is reached from it.
pub const BASE_CHAIN: &str = "forward";
/// The base chain's hook. `filter` priority (0) runs after conntrack and
/// after any `raw`/`mangle` work of other tables; policy `accept` because
/// the table only says no: other tables may still drop what it lets pass.
pub const BASE_CHAIN_HOOK: &str = "type filter hook forward priority filter; policy accept;";

/// The policy table: named sets, verdict maps and chains. Rules refer to
/// sets and maps by name (`@name`), maps to chains (`jump name`).
///
/// Plain data, so two rulesets compare and diff cheaply; names are derived
/// from content by the compiler, so an unchanged piece keeps its name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Named sets by name.
    pub sets: BTreeMap<String, SetDef>,
    /// Named verdict maps by name.
    pub maps: BTreeMap<String, MapDef>,
    /// Chains by name: their rules, in order, as `nft` rule text.
    /// [`BASE_CHAIN`] is the hooked base chain; the others are regular.
    pub chains: BTreeMap<String, Vec<String>>,
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
    /// The key type (`ipv4_addr`).
    pub key_type: String,
    /// The value type (`verdict`).
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
    /// Chains, the base chain included.
    pub chains: usize,
    /// Rules of all chains.
    pub rules: usize,
}

impl Ruleset {
    /// Counts sets, maps, elements, chains and rules.
    pub fn stats(&self) -> Stats {
        Stats {
            sets: self.sets.len(),
            maps: self.maps.len(),
            elements: self.sets.values().map(|s| s.elements.len()).sum::<usize>()
                + self.maps.values().map(|m| m.elements.len()).sum::<usize>(),
            chains: self.chains.len(),
            rules: self.chains.values().map(Vec::len).sum(),
        }
    }
}

impl SetDef {
    /// The set's declaration without elements, as `add set` takes it.
    fn declaration(&self) -> String {
        let mut out = format!("type {};", self.typ);
        if !self.flags.is_empty() {
            out.push_str(&format!(" flags {};", self.flags.join(",")));
        }
        out
    }
}

impl MapDef {
    /// The map's declaration without elements, as `add map` takes it.
    fn declaration(&self) -> String {
        format!("type {} : {};", self.key_type, self.value_type)
    }

    /// Elements as `key : value` text.
    fn element_texts<'a>(&'a self, keys: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        keys.into_iter()
            .filter_map(|k| self.elements.get(k).map(|v| format!("{k} : {v}")))
            .collect()
    }
}
