//! A ruleset changed in place that remembers, for every piece it touched,
//! what the piece was before ([`Tracked`]). The incremental compiler
//! removes and re-adds a changed Service's share through it; the
//! [`Change`] it hands out compares only the touched pieces with their
//! originals, so a change of one endpoint costs the same whatever the
//! size of the table, and a piece removed and put back as it was is no
//! change at all.

use std::collections::BTreeMap;

use weft_nft::{Change, MapElements, SetElements};

use crate::nft::{MapDef, Ruleset, SetDef};

/// The ruleset and the journal of what was touched since the last
/// [`Tracked::take_change`].
#[derive(Debug)]
pub(crate) struct Tracked {
    pub ruleset: Ruleset,
    journal: Journal,
    /// Whether changes are journaled: not while the first table is built,
    /// when there is no previous one to compare with.
    tracking: bool,
}

/// The original of every touched piece.
#[derive(Debug, Default)]
struct Journal {
    /// Chain → its rules before (`None`: it did not exist).
    chains: BTreeMap<String, Option<Vec<String>>>,
    /// Set → whether it existed.
    sets: BTreeMap<String, bool>,
    /// Set → element → whether it was there.
    set_elements: BTreeMap<String, BTreeMap<String, bool>>,
    /// Map → whether it existed.
    maps: BTreeMap<String, bool>,
    /// Map → key → its value before.
    map_elements: BTreeMap<String, BTreeMap<String, Option<String>>>,
}

impl Tracked {
    /// Holds `ruleset`, changes to it not journaled until
    /// [`Tracked::clear`].
    pub fn new(ruleset: Ruleset) -> Tracked {
        Tracked {
            ruleset,
            journal: Journal::default(),
            tracking: false,
        }
    }

    /// Sets the rules of chain `name`, creating it.
    pub fn set_chain(&mut self, name: &str, rules: Vec<String>) {
        self.touch_chain(name);
        self.ruleset.chains.insert(name.to_owned(), rules);
    }

    /// Removes chain `name` (nothing when it is not there).
    pub fn remove_chain(&mut self, name: &str) {
        self.touch_chain(name);
        self.ruleset.chains.remove(name);
    }

    fn touch_chain(&mut self, name: &str) {
        if self.tracking && !self.journal.chains.contains_key(name) {
            let before = self.ruleset.chains.get(name).cloned();
            self.journal.chains.insert(name.to_owned(), before);
        }
    }

    /// Adds set `name` as `def` (with its elements), replacing one of the
    /// same name.
    pub fn add_set(&mut self, name: &str, def: SetDef) {
        self.remove_set(name);
        for element in &def.elements {
            self.touch_set_element(name, element);
        }
        self.ruleset.sets.insert(name.to_owned(), def);
    }

    /// Removes set `name` and its elements.
    pub fn remove_set(&mut self, name: &str) {
        if self.tracking && !self.journal.sets.contains_key(name) {
            let existed = self.ruleset.sets.contains_key(name);
            self.journal.sets.insert(name.to_owned(), existed);
        }
        if let Some(def) = self.ruleset.sets.remove(name) {
            for element in &def.elements {
                self.touch_set_element(name, element);
            }
        }
    }

    /// Adds (`present`) or removes an element of the existing set `set`.
    pub fn set_element(&mut self, set: &str, element: String, present: bool) {
        self.touch_set_element(set, &element);
        let Some(def) = self.ruleset.sets.get_mut(set) else {
            debug_assert!(false, "element of missing set {set}");
            return;
        };
        if present {
            def.elements.insert(element);
        } else {
            def.elements.remove(&element);
        }
    }

    fn touch_set_element(&mut self, set: &str, element: &str) {
        if !self.tracking {
            return;
        }
        let touched = self.journal.set_elements.entry(set.to_owned()).or_default();
        if !touched.contains_key(element) {
            let was = self
                .ruleset
                .sets
                .get(set)
                .is_some_and(|d| d.elements.contains(element));
            touched.insert(element.to_owned(), was);
        }
    }

    /// Creates map `name` as `def` (without elements) unless it exists.
    pub fn ensure_map(&mut self, name: &str, def: MapDef) {
        if self.ruleset.maps.contains_key(name) {
            return;
        }
        self.touch_map(name);
        self.ruleset.maps.insert(name.to_owned(), def);
    }

    /// Removes map `name` and its elements.
    pub fn remove_map(&mut self, name: &str) {
        let keys: Vec<String> = self
            .ruleset
            .maps
            .get(name)
            .map(|m| m.elements.keys().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            self.map_element(name, key, None);
        }
        self.touch_map(name);
        self.ruleset.maps.remove(name);
    }

    fn touch_map(&mut self, name: &str) {
        if self.tracking && !self.journal.maps.contains_key(name) {
            let existed = self.ruleset.maps.contains_key(name);
            self.journal.maps.insert(name.to_owned(), existed);
        }
    }

    /// Sets (`Some`) or removes (`None`) the element `key` of the existing
    /// map `map`.
    pub fn map_element(&mut self, map: &str, key: String, value: Option<String>) {
        let Some(def) = self.ruleset.maps.get_mut(map) else {
            debug_assert!(false, "element of missing map {map}");
            return;
        };
        if !self.tracking {
            match value {
                Some(value) => def.elements.insert(key, value),
                None => def.elements.remove(&key),
            };
            return;
        }
        let touched = self.journal.map_elements.entry(map.to_owned()).or_default();
        let before = match value {
            Some(value) => def.elements.insert(key.clone(), value),
            None => def.elements.remove(&key),
        };
        touched.entry(key).or_insert(before);
    }

    /// The change from the ruleset as it was at the last call to now,
    /// from the touched pieces alone; the journal starts afresh.
    pub fn take_change(&mut self) -> Change {
        let journal = std::mem::take(&mut self.journal);
        let r = &self.ruleset;
        let mut change = Change::default();
        for (name, before) in journal.chains {
            match (before, r.chains.get(&name)) {
                (None, Some(now)) => {
                    change.added_chains.insert(name, now.clone());
                }
                (Some(_), None) => {
                    change.removed_chains.insert(name);
                }
                (Some(before), Some(now)) if before != *now => {
                    change.changed_chains.insert(name, now.clone());
                }
                _ => {}
            }
        }
        for (name, existed) in journal.sets {
            match (existed, r.sets.get(&name)) {
                (false, Some(now)) => {
                    change.added_sets.insert(name, now.clone());
                }
                (true, None) => {
                    change.removed_sets.insert(name);
                }
                _ => {}
            }
        }
        for (name, elements) in journal.set_elements {
            let Some(now) = r.sets.get(&name) else {
                continue; // removed: the set goes whole
            };
            if change.added_sets.contains_key(&name) {
                continue; // added whole
            }
            let mut diff = SetElements::default();
            for (element, was) in elements {
                match (was, now.elements.contains(&element)) {
                    (true, false) => diff.removed.push(element),
                    (false, true) => diff.added.push(element),
                    _ => {}
                }
            }
            if !diff.is_empty() {
                change.set_elements.insert(name, diff);
            }
        }
        for (name, existed) in journal.maps {
            match (existed, r.maps.get(&name)) {
                (false, Some(now)) => {
                    change.added_maps.insert(name, now.clone());
                }
                (true, None) => {
                    change.removed_maps.insert(name);
                }
                _ => {}
            }
        }
        for (name, elements) in journal.map_elements {
            let Some(now) = r.maps.get(&name) else {
                continue;
            };
            if change.added_maps.contains_key(&name) {
                continue;
            }
            let mut diff = MapElements::default();
            for (key, before) in elements {
                let after = now.elements.get(&key);
                if before.as_ref() == after {
                    continue;
                }
                if let Some(before) = before {
                    diff.removed.push((key.clone(), before));
                }
                if let Some(after) = after {
                    diff.added.push((key, after.clone()));
                }
            }
            if !diff.is_empty() {
                change.map_elements.insert(name, diff);
            }
        }
        change
    }

    /// Forgets what was touched: the current ruleset becomes the base,
    /// and changes are journaled from now on.
    pub fn clear(&mut self) {
        self.journal = Journal::default();
        self.tracking = true;
    }
}
