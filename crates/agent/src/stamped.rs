//! Keeping one of weft's nftables tables (a [`weft_nft::Ruleset`]) at its
//! desired state: the whole table on the first pass or when the kernel's
//! copy changed behind the agent, only the difference afterwards, and
//! nothing at all when a restarted agent finds its own table in place.
//!
//! Change detection: the SHA-256 of the rendered full table is stamped into
//! the table as the comment of the one element of set [`STATE_SET`]. A
//! table's own comment cannot be changed after creation (the kernel ignores
//! it on update), so it could not follow a delta; an element can be
//! replaced in the same transaction as the delta. Reading it back lists
//! that one small set, whatever the table's size.

use std::fmt::Write;

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use weft_netlink::{NftBatch, NftElement};
use weft_nft::{Change, Ruleset, change_batch, diff, render_change, render_full};

use crate::error::Result;
use crate::nft::{HASH_PREFIX, hex};

/// The set, in each stamped table, whose one element carries the agent's
/// hash in its comment. The compilers never use this name.
pub const STATE_SET: &str = "agent_state";

/// What one pass did to a stamped table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableAction {
    /// The kernel already held the desired table.
    Unchanged,
    /// The kernel's table carries the desired hash although this agent has
    /// not applied it (a restart): adopted as it is, nothing applied.
    Adopted,
    /// The whole table was loaded in one transaction (first pass, table
    /// missing or changed behind the agent's back, or a failed delta).
    Full,
    /// Only the difference was applied, in one transaction.
    Delta,
}

/// How a stamped table is read and written: the two [`crate::Kernel`]
/// methods of that table.
pub(crate) struct TableIo<K> {
    /// Reads the hash in the table's stamp.
    pub(crate) hash: fn(&mut K) -> Result<Option<String>>,
    /// Runs one `nft -f` transaction on the table.
    pub(crate) apply: fn(&mut K, &str) -> Result<()>,
}

/// Commits one netlink transaction on a table: the [`crate::Kernel`]
/// method of a table whose deltas may skip `nft` ([`StampedTable::apply_fast`]).
pub(crate) type Commit<K> = fn(&mut K, &NftBatch) -> Result<()>;

/// What this agent last loaded into one table, kept across passes so that a
/// change is applied as a delta against it.
#[derive(Debug, Default)]
pub(crate) struct StampedTable {
    applied: Option<Applied>,
}

#[derive(Debug)]
struct Applied {
    ruleset: Ruleset,
    hash: String,
}

impl StampedTable {
    /// Brings the kernel's table `ruleset.table` to `ruleset`.
    ///
    /// When the kernel still carries the stamp of what this agent applied,
    /// only [`weft_nft::render_delta`] is applied (nothing when it is `None`). Else,
    /// when the kernel's stamp equals the desired hash, the table is adopted
    /// (hitless restart); otherwise the whole table is loaded atomically. A
    /// delta the kernel refuses falls back to a full load.
    pub(crate) fn apply<K>(
        &mut self,
        kernel: &mut K,
        io: &TableIo<K>,
        ruleset: Ruleset,
    ) -> Result<TableAction> {
        let have = (io.hash)(kernel)?;
        if let Some(applied) = self.applied.take() {
            if have.as_deref() == Some(applied.hash.as_str()) {
                let change = diff(&applied.ruleset, &ruleset);
                match delta(kernel, io, None, &change, &ruleset, || {
                    ruleset_hash(&ruleset)
                }) {
                    Delta::Unchanged => {
                        self.applied = Some(applied);
                        return Ok(TableAction::Unchanged);
                    }
                    Delta::Applied(hash) => {
                        self.applied = Some(Applied { ruleset, hash });
                        return Ok(TableAction::Delta);
                    }
                    Delta::Refused => {}
                }
            } else {
                warn!(
                    table = ruleset.table,
                    expected = applied.hash,
                    found = ?have,
                    "table missing or changed behind the agent; reloading it"
                );
            }
        }
        let hash = ruleset_hash(&ruleset);
        if have.as_deref() == Some(hash.as_str()) {
            self.applied = Some(Applied { ruleset, hash });
            return Ok(TableAction::Adopted);
        }
        (io.apply)(
            kernel,
            &(render_full(&ruleset) + &stamp(&ruleset.table, &hash)),
        )?;
        self.applied = Some(Applied { ruleset, hash });
        Ok(TableAction::Full)
    }
}

/// What this agent last loaded into one table whose compiler keeps the
/// table itself and knows each pass's change and hash (the proxy's
/// [`weft_proxy::Compiler`]): only the stamp is kept here, no copy of the
/// table.
#[derive(Debug, Default)]
pub(crate) struct ChangedTable {
    /// The stamp of what the kernel holds when it is the compiler's table
    /// before the pass; `None` before the first pass and after a failed
    /// one (the next pass loads the whole table, or adopts it).
    applied: Option<String>,
}

impl ChangedTable {
    /// Brings the kernel's table to `ruleset`, which `change` leads to
    /// from the table of the previous pass, stamped `hash`: the change
    /// alone while the kernel carries the previous pass's stamp (over
    /// netlink by `commit` when [`change_batch`] encodes it), else the
    /// table adopted when the kernel carries `hash`, else loaded whole. A
    /// delta the kernel refuses falls back to a full load.
    pub(crate) fn apply<K>(
        &mut self,
        kernel: &mut K,
        io: &TableIo<K>,
        commit: Commit<K>,
        ruleset: &Ruleset,
        change: &Change,
        hash: &str,
    ) -> Result<TableAction> {
        let have = (io.hash)(kernel)?;
        if let Some(applied) = self.applied.take() {
            if have.as_deref() == Some(applied.as_str()) && !change.full {
                match delta(kernel, io, Some(commit), change, ruleset, || {
                    hash.to_owned()
                }) {
                    Delta::Unchanged => {
                        self.applied = Some(applied);
                        return Ok(TableAction::Unchanged);
                    }
                    Delta::Applied(hash) => {
                        self.applied = Some(hash);
                        return Ok(TableAction::Delta);
                    }
                    Delta::Refused => {}
                }
            } else if have.as_deref() != Some(applied.as_str()) {
                warn!(
                    table = ruleset.table,
                    expected = applied,
                    found = ?have,
                    "table missing or changed behind the agent; reloading it"
                );
            }
        }
        if have.as_deref() == Some(hash) {
            self.applied = Some(hash.to_owned());
            return Ok(TableAction::Adopted);
        }
        (io.apply)(
            kernel,
            &(render_full(ruleset) + &stamp(&ruleset.table, hash)),
        )?;
        self.applied = Some(hash.to_owned());
        Ok(TableAction::Full)
    }
}

/// What applying the difference did.
enum Delta {
    /// Nothing differs.
    Unchanged,
    /// Applied, the table stamped with this hash.
    Applied(String),
    /// The kernel refused it (nothing applied): load the whole table.
    Refused,
}

/// Applies `change`, which leads from what the kernel holds to `new`, with
/// the new stamp (`hash`, computed only when there is a change), in one
/// transaction: over netlink when `commit` is given and [`change_batch`]
/// encodes the change, else (or when the kernel refuses the batch, which
/// then applied nothing) through `nft -f`.
fn delta<K>(
    kernel: &mut K,
    io: &TableIo<K>,
    commit: Option<Commit<K>>,
    change: &Change,
    new: &Ruleset,
    hash: impl FnOnce() -> String,
) -> Delta {
    if change.is_empty() {
        return Delta::Unchanged;
    }
    let hash = hash();
    if let Some(commit) = commit {
        match change_batch(change, new) {
            Ok(None) => return Delta::Unchanged,
            Ok(Some(mut batch)) => {
                stamp_batch(&mut batch, &new.table, &hash);
                match commit(kernel, &batch) {
                    Ok(()) => return Delta::Applied(hash),
                    Err(e) => warn!(
                        table = new.table,
                        error = %e,
                        "netlink delta refused; trying nft"
                    ),
                }
            }
            Err(why) => debug!(table = new.table, %why, "delta through nft"),
        }
    }
    let Some(text) = render_change(change, new) else {
        return Delta::Unchanged;
    };
    match (io.apply)(kernel, &(text + &stamp(&new.table, &hash))) {
        Ok(()) => Delta::Applied(hash),
        Err(e) => {
            warn!(
                table = new.table,
                error = %e,
                "delta refused; loading the whole table"
            );
            Delta::Refused
        }
    }
}

/// The hash stamped for `ruleset`: SHA-256 of its full rendering, which is
/// a deterministic function of the ruleset.
pub fn ruleset_hash(ruleset: &Ruleset) -> String {
    hex(&Sha256::digest(render_full(ruleset).as_bytes()))
}

/// The commands that (re)write the stamp of `table`, appended to every
/// transaction: `add set` is a no-op when the set exists, `flush` drops the
/// old element.
pub(crate) fn stamp(table: &str, hash: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "add set {table} {STATE_SET} {{ type inet_service; }}");
    let _ = writeln!(out, "flush set {table} {STATE_SET}");
    let _ = writeln!(
        out,
        "add element {table} {STATE_SET} {{ 0 comment \"{HASH_PREFIX}{hash}\" }}"
    );
    out
}

/// [`stamp`] as netlink messages appended to `batch`: the set exists
/// (the kernel carries the stamp this delta builds on), so flush it and
/// add the one element, the hash in its comment.
fn stamp_batch(batch: &mut NftBatch, table: &str, hash: &str) {
    let name = table.split_once(' ').map_or(table, |(_, name)| name);
    batch.flush_set(name, STATE_SET).add_elements(
        name,
        STATE_SET,
        &[NftElement {
            // `0` as an `inet_service`.
            key: vec![0, 0],
            data: None,
            comment: Some(format!("{HASH_PREFIX}{hash}")),
        }],
    );
}

/// The hash in the stamp, from `nft list set <table> agent_state` (or from a
/// script that writes it); `None` without a stamp.
pub fn hash_from_stamp(listing: &str) -> Option<String> {
    let marker = format!("comment \"{HASH_PREFIX}");
    let start = listing.rfind(&marker)? + marker.len();
    let rest = &listing[start..];
    let hash = &rest[..rest.find('"')?];
    (!hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_owned())
}
