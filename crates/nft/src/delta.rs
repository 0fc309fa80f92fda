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

use std::collections::BTreeMap;
use std::fmt::Write;

use super::render::render_full;
use super::{MapDef, Ruleset, SetDef};

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
    if needs_full(old, new) {
        return Some(render_full(new));
    }

    let table = &new.table;
    let mut out = String::new();
    // 1. Sets.
    for (name, set) in &new.sets {
        match old.sets.get(name) {
            None => {
                let _ = writeln!(out, "add set {table} {name} {{ {} }}", set.declaration());
                element_command(&mut out, table, "add", name, set.elements.iter().cloned());
            }
            // Equal element sets compare in one linear pass, far cheaper
            // than looking every element up in the other set.
            Some(before) if before.elements == set.elements => {}
            Some(before) => set_elements(&mut out, table, name, before, set),
        }
    }
    // 2. New chains, empty.
    let added_chains: Vec<&String> = new
        .chains
        .keys()
        .filter(|n| !old.chains.contains_key(*n))
        .collect();
    for name in &added_chains {
        let _ = writeln!(out, "add chain {table} {name}");
    }
    // 3. Maps.
    for (name, map) in &new.maps {
        match old.maps.get(name) {
            None => {
                let _ = writeln!(out, "add map {table} {name} {{ {} }}", map.declaration());
                element_command(
                    &mut out,
                    table,
                    "add",
                    name,
                    map.element_texts(map.elements.keys()),
                );
            }
            Some(before) if before.elements == map.elements => {}
            Some(before) => map_elements(&mut out, table, name, before, map),
        }
    }
    // 4. Rules of new chains, then changed chains, base and regular merged
    // by name.
    for name in &added_chains {
        rules(&mut out, table, name, &new.chains[*name]);
    }
    let changed_regular = new
        .chains
        .iter()
        .filter(|(name, now)| old.chains.get(*name).is_some_and(|before| before != *now));
    let changed_base = new
        .base_chains
        .iter()
        .filter(|(name, now)| {
            old.base_chains
                .get(*name)
                .is_some_and(|b| b.rules != now.rules)
        })
        .map(|(name, now)| (name, &now.rules));
    let changed: BTreeMap<&String, &Vec<String>> = changed_regular.chain(changed_base).collect();
    for (name, rules_now) in changed {
        let _ = writeln!(out, "flush chain {table} {name}");
        rules(&mut out, table, name, rules_now);
    }
    // 5. Removed chains.
    for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
        let _ = writeln!(out, "delete chain {table} {name}");
    }
    // 6. Removed maps and sets.
    for name in old.maps.keys().filter(|n| !new.maps.contains_key(*n)) {
        let _ = writeln!(out, "delete map {table} {name}");
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        let _ = writeln!(out, "delete set {table} {name}");
    }
    (!out.is_empty()).then_some(out)
}

/// Whether `old` cannot become `new` in place: another table, a set or map
/// retyped under the same name, or base chains added, removed or re-hooked
/// (they practically never change, so the full replacement costs nothing
/// in practice and keeps hook changes out of the delta).
pub(crate) fn needs_full(old: &Ruleset, new: &Ruleset) -> bool {
    let retyped_set = new.sets.iter().any(|(name, set)| {
        old.sets
            .get(name)
            .is_some_and(|o| o.typ != set.typ || o.flags != set.flags)
    });
    let retyped_map = new.maps.iter().any(|(name, map)| {
        old.maps
            .get(name)
            .is_some_and(|o| o.key_type != map.key_type || o.value_type != map.value_type)
    });
    let hooks = |r: &Ruleset| {
        r.base_chains
            .iter()
            .map(|(name, c)| (name.clone(), c.hook.clone()))
            .collect::<Vec<_>>()
    };
    old.table != new.table || retyped_set || retyped_map || hooks(old) != hooks(new)
}

/// Deletes the elements `before` has and `now` lacks, then adds the new
/// ones. Deleting first matters for interval sets, where an added range may
/// overlap a removed one.
fn set_elements(out: &mut String, table: &str, name: &str, before: &SetDef, now: &SetDef) {
    let gone = before.elements.difference(&now.elements).cloned();
    element_command(out, table, "delete", name, gone);
    let added = now.elements.difference(&before.elements).cloned();
    element_command(out, table, "add", name, added);
}

/// Deletes keys that are gone or whose value changed, then adds keys that
/// are new or changed (with their new value).
fn map_elements(out: &mut String, table: &str, name: &str, before: &MapDef, now: &MapDef) {
    let differs = |from: &MapDef, to: &MapDef| -> Vec<String> {
        from.elements
            .iter()
            .filter(|(k, v)| to.elements.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect()
    };
    element_command(out, table, "delete", name, differs(before, now));
    let added = differs(now, before);
    element_command(out, table, "add", name, now.element_texts(&added));
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
