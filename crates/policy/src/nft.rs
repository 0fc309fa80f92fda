//! The policy table's name and base chain; the table itself is a
//! [`weft_nft::Ruleset`], rendered whole ([`render_full`]) or as the
//! difference between two rulesets ([`render_delta`]) by the shared crate.
//!
//! weft's policy lives in its own table, [`TABLE`], apart from the agent's
//! masquerade table `inet weft`, so that each is replaced or updated on its
//! own schedule and a policy update never rewrites unrelated state.

pub use weft_nft::{BaseChain, MapDef, Ruleset, SetDef, Stats, render_delta, render_full};

/// The table's family and name.
pub const TABLE: &str = "inet weft-policy";
/// The one base chain; every other chain is reached from it.
pub const BASE_CHAIN: &str = "forward";
/// The base chain's hook. `filter` priority (0) runs after conntrack and
/// after any `raw`/`mangle` work of other tables; policy `accept` because
/// the table only says no: other tables may still drop what it lets pass.
pub const BASE_CHAIN_HOOK: &str = "type filter hook forward priority filter; policy accept;";
