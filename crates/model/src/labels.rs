//! Label sets as the agent keeps them: compact, sorted, interned.
//!
//! A cluster's labels repeat endlessly (every pod of an app carries the same
//! `app`/`tier` pairs, every selector names the same few keys), and the
//! agent holds all of them for as long as the objects live. A
//! `BTreeMap<String, String>` per object cost a 500-byte tree node plus two
//! strings per pair; issue 4's memory target (≤ 2 KiB per pod at 10,000
//! pods and policies) left no room for that. [`Labels`] is a sorted boxed
//! slice of pairs whose strings come from a process-wide [`intern`]er, so a
//! pair costs two shared pointers and each distinct string exists once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Index;
use std::sync::{Arc, LazyLock, Mutex};

/// An interned string: shared by every label, selector and requirement
/// that spells it.
pub type Str = Arc<str>;

/// Fewest entries before the interner first drops unused strings.
const PURGE_MIN: usize = 1024;

/// The process-wide table of interned strings.
struct Interner {
    strings: HashSet<Str>,
    /// Size at which unused strings are dropped next: twice the live count
    /// after the last purge, so purging costs O(1) per interned string.
    purge_at: usize,
}

static INTERNER: LazyLock<Mutex<Interner>> = LazyLock::new(|| {
    Mutex::new(Interner {
        strings: HashSet::new(),
        purge_at: PURGE_MIN,
    })
});

/// The shared copy of `text`. Strings no object holds any more are dropped
/// from the table as it grows, so churning values (`pod-template-hash`)
/// do not accumulate for the life of the process.
pub fn intern(text: &str) -> Str {
    // A poisoned lock means a panic while inserting into a HashSet, which
    // leaves the set itself consistent: keep using it.
    let mut table = INTERNER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = table.strings.get(text) {
        return Arc::clone(s);
    }
    if table.strings.len() >= table.purge_at {
        // Only the table holds these: nobody can ask for them by pointer.
        table.strings.retain(|s| Arc::strong_count(s) > 1);
        table.strings.shrink_to_fit();
        table.purge_at = (table.strings.len() * 2).max(PURGE_MIN);
    }
    let s: Str = Arc::from(text);
    table.strings.insert(Arc::clone(&s));
    s
}

/// A set of labels (`metadata.labels`, `matchLabels`): keys unique, sorted.
///
/// Reads like the `BTreeMap<String, String>` it replaces (`get`, `iter` in
/// key order, `contains_key`, `len`, `labels["key"]`, `collect()` from
/// pairs, `From` a map or an array), but takes one allocation per set and
/// shares its strings with every other set through [`intern`].
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Box<[(Str, Str)]>);

impl Labels {
    /// No labels (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).ok().map(|i| &*self.0[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels as `(key, value)`, in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        self.0.iter().map(|(k, _)| &**k)
    }

    /// The labels as interned pairs, in key order (for callers that keep
    /// them without copying the strings).
    pub fn pairs(&self) -> &[(Str, Str)] {
        &self.0
    }

    /// These labels with `key` set to `value` (replacing its value).
    pub fn with(&self, key: &str, value: &str) -> Self {
        let mut labels = self.clone();
        labels.set(key, value);
        labels
    }

    /// Sets `key` to `value`, returning the value it replaces, as a map's
    /// `insert` does. Reallocates the set: labels are built once and read
    /// often, so this is for building and tests, not for hot loops.
    pub fn insert(&mut self, key: String, value: String) -> Option<Str> {
        self.set(&key, &value)
    }

    fn set(&mut self, key: &str, value: &str) -> Option<Str> {
        let value = intern(value);
        match self.position(key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                let mut pairs = std::mem::take(&mut self.0).into_vec();
                pairs.insert(i, (intern(key), value));
                self.0 = pairs.into_boxed_slice();
                None
            }
        }
    }

    /// The labels as an ordered map of owned strings (for wire formats).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    /// Builds the set; of pairs with equal keys the last wins, as inserting
    /// them one by one into a map would.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(Str, Str)> = iter
            .into_iter()
            .map(|(k, v)| (intern(k.as_ref()), intern(v.as_ref())))
            .collect();
        // Stable: equal keys keep their order, so the last is last.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Str, Str)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        Self(out.into_boxed_slice())
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        map.into_iter().collect()
    }
}

impl From<&BTreeMap<String, String>> for Labels {
    fn from(map: &BTreeMap<String, String>) -> Self {
        map.iter().collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl Index<&str> for Labels {
    type Output = str;

    /// The value of `key`; panics when it is absent, as a map's index does.
    fn index(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("label {key:?} is not set"))
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (Str, Str)>, fn(&'a (Str, Str)) -> (&'a str, &'a str)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
#[path = "labels_tests.rs"]
mod tests;
