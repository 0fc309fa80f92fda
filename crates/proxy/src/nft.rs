//! The proxy table as a plain value ([`Ruleset`]) and its rendering to
//! `nft -f` text, whole ([`render_full`]) or as a difference
//! ([`render_delta`]).
//!
//! Sets, maps and regular chains are a [`weft_policy::nft::Ruleset`], and
//! their rendering and diffing is the policy compiler's, reused through a
//! thin adapter rather than copied: that code is written for the single
//! base chain of `inet weft-policy`, while this table has five base chains
//! on two hooks. The adapter renders the policy body, retargets it to
//! [`TABLE`] and adds the base chains. The base chains depend only on the
//! node's address families, so they practically never change; when they
//! do, the delta is the full replacement.
//!
//! Moving the policy crate's `nft` module into a shared crate that knows a
//! table name and several hooked base chains would remove the adapter.

use std::collections::BTreeMap;
use std::fmt::Write;

use weft_policy::nft as shared;

pub use weft_policy::nft::{MapDef, SetDef, Stats};

/// The table's family and name.
pub const TABLE: &str = "inet weft-proxy";

/// The table the shared renderer writes, replaced by [`TABLE`].
const SHARED_TABLE: &str = shared::TABLE;

/// The proxy table: the shared body plus hooked base chains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Named sets, maps and regular chains. Regular chains refer only to
    /// sets and to other chains; every map lookup sits in a base chain, so
    /// that the body loads in the shared renderer's order (sets, chains,
    /// maps).
    pub body: shared::Ruleset,
    /// Base chains by name, rendered after the body.
    pub base_chains: BTreeMap<String, BaseChain>,
}

/// A chain attached to a netfilter hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseChain {
    /// The chain's `type … hook … priority …; policy …;` line.
    pub hook: String,
    /// Its rules, in order, as `nft` rule text.
    pub rules: Vec<String>,
}

impl Ruleset {
    /// Counts sets, maps, elements, chains (base chains included) and rules.
    pub fn stats(&self) -> Stats {
        let mut stats = self.body.stats();
        stats.chains += self.base_chains.len();
        stats.rules += self
            .base_chains
            .values()
            .map(|c| c.rules.len())
            .sum::<usize>();
        stats
    }
}

/// Renders `ruleset` as one `nft -f` transaction that replaces the table
/// atomically (created empty first, so that its `delete` cannot fail): for
/// the first load and after a restart.
pub fn render_full(ruleset: &Ruleset) -> String {
    let body = retarget(&shared::render_full(&ruleset.body));
    // The shared script ends with the table's closing brace: the base
    // chains go in before it.
    let mut out = body
        .strip_suffix("}\n")
        .expect("the shared renderer closes the table last")
        .to_owned();
    for (name, chain) in &ruleset.base_chains {
        let _ = writeln!(out, "\tchain {name} {{");
        let _ = writeln!(out, "\t\t{}", chain.hook);
        for rule in &chain.rules {
            let _ = writeln!(out, "\t\t{rule}");
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

/// The `nft -f` transaction that turns the table loaded from `old` into
/// `new`, touching only what differs (see
/// [`weft_policy::nft::render_delta`] for the order of commands and when it
/// falls back to a full replacement). `None` when the two are equal. `old`
/// must be what the kernel holds.
pub fn render_delta(old: &Ruleset, new: &Ruleset) -> Option<String> {
    if old == new {
        return None;
    }
    if old.base_chains != new.base_chains {
        return Some(render_full(new));
    }
    // The shared diff insists on its base chain being on both sides; an
    // equal placeholder on both produces no command.
    let with_placeholder = |r: &shared::Ruleset| {
        let mut r = r.clone();
        r.chains.insert(shared::BASE_CHAIN.to_owned(), Vec::new());
        r
    };
    let delta = shared::render_delta(&with_placeholder(&old.body), &with_placeholder(&new.body))?;
    if delta.starts_with("table ") {
        // The shared diff chose a full replacement (a set changed type):
        // that must be this table's full script, base chains included.
        return Some(render_full(new));
    }
    Some(retarget(&delta))
}

/// Replaces the shared table name with [`TABLE`]: it appears once per line,
/// right after the command words, before any element or rule text.
fn retarget(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        out.push_str(&line.replacen(SHARED_TABLE, TABLE, 1));
        out.push('\n');
    }
    out
}
