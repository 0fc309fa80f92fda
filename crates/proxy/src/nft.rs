//! The proxy table's name; the table itself is a [`weft_nft::Ruleset`] with
//! five base chains on the prerouting, output and postrouting hooks,
//! rendered whole ([`render_full`]) or as a difference ([`render_delta`]) by
//! the shared crate. The base chains depend only on constants, so a delta
//! never touches them.

pub use weft_nft::{
    BaseChain, Change, MapDef, NftBatch, NftSocket, Ruleset, SetDef, Stats, Unsupported,
    change_batch, delta_batch, diff, render_change, render_delta, render_full,
};

/// The table's family and name.
pub const TABLE: &str = "inet weft-proxy";
