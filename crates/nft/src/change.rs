//! The difference between two rulesets of one table as a plain value
//! ([`Change`]), which [`crate::render_delta`] renders for `nft -f` and
//! [`crate::delta_batch`] encodes as netlink messages.
//!
//! [`diff`] computes it from two whole rulesets in one linear walk; a
//! compiler that knows what it changed (the proxy's incremental compiler)
//! builds it directly from the pieces it touched, so that a change of one
//! endpoint costs the same whatever the size of the table.

use std::collections::{BTreeMap, BTreeSet};

use super::{MapDef, Ruleset, SetDef};

/// What turns one ruleset of a table into another, piece by piece. The
/// maps are keyed by set, map or chain name, so that renderings follow
/// name order whatever way the change was built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The table cannot change in place (another table, a set or map
    /// retyped under its name, base chains added, removed or re-hooked):
    /// only a full replacement takes the old table to the new one.
    pub full: bool,
    /// Sets that appear, with their elements.
    pub added_sets: BTreeMap<String, SetDef>,
    /// Element changes of sets present before and after.
    pub set_elements: BTreeMap<String, SetElements>,
    /// Maps that appear, with their elements.
    pub added_maps: BTreeMap<String, MapDef>,
    /// Element changes of maps present before and after.
    pub map_elements: BTreeMap<String, MapElements>,
    /// Regular chains that appear, with their rules.
    pub added_chains: BTreeMap<String, Vec<String>>,
    /// Chains (regular or base) present before and after whose rules
    /// differ: their new rules.
    pub changed_chains: BTreeMap<String, Vec<String>>,
    /// Regular chains that go.
    pub removed_chains: BTreeSet<String>,
    /// Maps that go.
    pub removed_maps: BTreeSet<String>,
    /// Sets that go.
    pub removed_sets: BTreeSet<String>,
}

/// The element changes of one set, each list sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetElements {
    /// Elements that go.
    pub removed: Vec<String>,
    /// Elements that appear.
    pub added: Vec<String>,
}

/// The element changes of one map, each list sorted by key. A key whose
/// value changes is in both: removed with its old value, added with its
/// new one (nft has no in-place replace).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapElements {
    /// Keys that go, with the value they had.
    pub removed: Vec<(String, String)>,
    /// Keys that appear, with their value.
    pub added: Vec<(String, String)>,
}

impl Change {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        !self.full
            && self.added_sets.is_empty()
            && self.set_elements.is_empty()
            && self.added_maps.is_empty()
            && self.map_elements.is_empty()
            && self.added_chains.is_empty()
            && self.changed_chains.is_empty()
            && self.removed_chains.is_empty()
            && self.removed_maps.is_empty()
            && self.removed_sets.is_empty()
    }

    /// Whether sets, maps or regular chains appear or go (only elements
    /// and rules change otherwise).
    pub fn reshapes(&self) -> bool {
        !(self.added_sets.is_empty()
            && self.added_maps.is_empty()
            && self.added_chains.is_empty()
            && self.removed_chains.is_empty()
            && self.removed_maps.is_empty()
            && self.removed_sets.is_empty())
    }
}

impl SetElements {
    /// The change from elements `before` to `now`.
    pub fn between(before: &BTreeSet<String>, now: &BTreeSet<String>) -> SetElements {
        SetElements {
            removed: before.difference(now).cloned().collect(),
            added: now.difference(before).cloned().collect(),
        }
    }

    /// Whether no element changes.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

impl MapElements {
    /// The change from elements `before` to `now`.
    pub fn between(
        before: &BTreeMap<String, String>,
        now: &BTreeMap<String, String>,
    ) -> MapElements {
        let differs = |from: &BTreeMap<String, String>, to: &BTreeMap<String, String>| {
            from.iter()
                .filter(|(k, v)| to.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        MapElements {
            removed: differs(before, now),
            added: differs(now, before),
        }
    }

    /// Whether no element changes.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

/// The change that turns `old` into `new`: one merge walk over the sorted
/// names of each kind of piece, equal pieces compared once.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Change {
    let mut change = Change {
        full: needs_full(old, new),
        ..Change::default()
    };
    if change.full {
        return change;
    }
    merge(&old.sets, &new.sets, |name, before, now| {
        match (before, now) {
            (None, Some(now)) => {
                change.added_sets.insert(name.clone(), now.clone());
            }
            (Some(_), None) => {
                change.removed_sets.insert(name.clone());
            }
            (Some(before), Some(now)) if before.elements != now.elements => {
                let elements = SetElements::between(&before.elements, &now.elements);
                change.set_elements.insert(name.clone(), elements);
            }
            _ => {}
        }
    });
    merge(&old.maps, &new.maps, |name, before, now| {
        match (before, now) {
            (None, Some(now)) => {
                change.added_maps.insert(name.clone(), now.clone());
            }
            (Some(_), None) => {
                change.removed_maps.insert(name.clone());
            }
            (Some(before), Some(now)) if before.elements != now.elements => {
                let elements = MapElements::between(&before.elements, &now.elements);
                change.map_elements.insert(name.clone(), elements);
            }
            _ => {}
        }
    });
    merge(&old.chains, &new.chains, |name, before, now| {
        match (before, now) {
            (None, Some(now)) => {
                change.added_chains.insert(name.clone(), now.clone());
            }
            (Some(_), None) => {
                change.removed_chains.insert(name.clone());
            }
            (Some(before), Some(now)) if before != now => {
                change.changed_chains.insert(name.clone(), now.clone());
            }
            _ => {}
        }
    });
    // needs_full() checked that the base chains match by name.
    for ((name, now), before) in new.base_chains.iter().zip(old.base_chains.values()) {
        if now.rules != before.rules {
            change
                .changed_chains
                .insert(name.clone(), now.rules.clone());
        }
    }
    change
}

/// Calls `f` once per name of `old` or `new`, in name order, with the
/// piece of each side: a linear walk, no lookups.
fn merge<V>(
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
    mut f: impl FnMut(&String, Option<&V>, Option<&V>),
) {
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, va)), Some((kb, vb))) if ka == kb => {
                f(ka, Some(va), Some(vb));
                a.next();
                b.next();
            }
            (Some((ka, va)), Some((kb, _))) if ka < kb => {
                f(ka, Some(va), None);
                a.next();
            }
            (Some((ka, va)), None) => {
                f(ka, Some(va), None);
                a.next();
            }
            (_, Some((kb, vb))) => {
                f(kb, None, Some(vb));
                b.next();
            }
        }
    }
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
