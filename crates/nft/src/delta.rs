//! The difference between two rulesets as one `nft -f` transaction.
//!
//! A transaction is atomic for packets, but `nft` and the kernel check each
//! command's references in order, so the commands are ordered so that
//! nothing refers to a set, map or chain that does not exist (yet or any
//! more):
//!
//! 1. new sets, then element changes of existing sets;
//! 2. new chains, created empty (map elements and rules may jump to them);
//! 3. new maps, then element changes of existing maps (a changed value is a
//!    delete and an add of the key: nft has no in-place replace);
//! 4. the rules of new chains, then flush + refill of changed chains, base
//!    and regular ones by name (a base chain keeps its hook through a
//!    flush);
//! 5. removed chains (nothing jumps to them after 3 and 4);
//! 6. removed maps and sets (no rule refers to them after 4 and 5).

use std::collections::BTreeSet;
use std::fmt::Write;

use super::Ruleset;
use super::change::{Change, diff};
use super::render::render_full;

/// Most elements per `add element`/`delete element` command, to keep lines
/// (and nft's parser buffers) bounded on large changes.
const ELEMENTS_PER_COMMAND: usize = 1000;

/// The `nft -f` transaction that turns the table loaded from `old` into
/// `new`, touching only what differs: set and map elements, whole sets,
/// maps and regular chains that appear or disappear, and the rules of a
/// chain (base or regular) whose rules changed. `None` when the two are
/// equal.
///
/// When a piece cannot change in place (the table differs, a set or map
/// keeps its name but changes its type or flags, or the base chains differ
/// in names or hooks) the transaction is the full replacement
/// ([`render_full`] of `new`), which is just as atomic, only larger. `old`
/// must be what the kernel holds: a delete of an element that is not there
/// fails the whole transaction (and the caller then falls back to a full
/// load).
pub fn render_delta(old: &Ruleset, new: &Ruleset) -> Option<String> {
    render_change(&diff(old, new), new)
}

/// [`render_delta`] of a [`Change`] already known: `new` is the ruleset
/// the change leads to (rendered whole when the change is `full`).
pub fn render_change(change: &Change, new: &Ruleset) -> Option<String> {
    if change.full {
        return Some(render_full(new));
    }
    let table = &new.table;
    let mut out = String::new();
    // 1. Sets, new and changed merged by name.
    let sets = change
        .added_sets
        .keys()
        .chain(change.set_elements.keys())
        .collect::<BTreeSet<_>>();
    for name in sets {
        if let Some(set) = change.added_sets.get(name) {
            let _ = writeln!(out, "add set {table} {name} {{ {} }}", set.declaration());
            element_command(&mut out, table, "add", name, set.elements.iter().cloned());
        } else if let Some(elements) = change.set_elements.get(name) {
            // Deleting first matters for interval sets, where an added
            // range may overlap a removed one.
            element_command(&mut out, table, "delete", name, elements.removed.clone());
            element_command(&mut out, table, "add", name, elements.added.clone());
        }
    }
    // 2. New chains, empty.
    for name in change.added_chains.keys() {
        let _ = writeln!(out, "add chain {table} {name}");
    }
    // 3. Maps, new and changed merged by name.
    let maps = change
        .added_maps
        .keys()
        .chain(change.map_elements.keys())
        .collect::<BTreeSet<_>>();
    for name in maps {
        if let Some(map) = change.added_maps.get(name) {
            let _ = writeln!(out, "add map {table} {name} {{ {} }}", map.declaration());
            element_command(
                &mut out,
                table,
                "add",
                name,
                map.element_texts(map.elements.keys()),
            );
        } else if let Some(elements) = change.map_elements.get(name) {
            let keys = elements.removed.iter().map(|(k, _)| k.clone());
            element_command(&mut out, table, "delete", name, keys);
            let added = elements.added.iter().map(|(k, v)| format!("{k} : {v}"));
            element_command(&mut out, table, "add", name, added);
        }
    }
    // 4. Rules of new chains, then changed chains, base and regular merged
    // by name.
    for (name, rules_now) in &change.added_chains {
        rules(&mut out, table, name, rules_now);
    }
    for (name, rules_now) in &change.changed_chains {
        let _ = writeln!(out, "flush chain {table} {name}");
        rules(&mut out, table, name, rules_now);
    }
    // 5. Removed chains.
    for name in &change.removed_chains {
        let _ = writeln!(out, "delete chain {table} {name}");
    }
    // 6. Removed maps and sets.
    for name in &change.removed_maps {
        let _ = writeln!(out, "delete map {table} {name}");
    }
    for name in &change.removed_sets {
        let _ = writeln!(out, "delete set {table} {name}");
    }
    (!out.is_empty()).then_some(out)
}

/// `add element`/`delete element` commands for `items`, in chunks; nothing
/// for no items.
fn element_command(
    out: &mut String,
    table: &str,
    verb: &str,
    name: &str,
    items: impl IntoIterator<Item = String>,
) {
    let items: Vec<String> = items.into_iter().collect();
    for chunk in items.chunks(ELEMENTS_PER_COMMAND) {
        let _ = writeln!(
            out,
            "{verb} element {table} {name} {{ {} }}",
            chunk.join(", ")
        );
    }
}

fn rules(out: &mut String, table: &str, chain: &str, rules: &[String]) {
    for rule in rules {
        let _ = writeln!(out, "add rule {table} {chain} {rule}");
    }
}
