//! The incremental compiler ([`Compiler`]): a pass recompiles only the
//! Services whose inputs changed, patches the table in place and hands
//! out the [`Change`] from the previous table, built from the pieces it
//! touched, and the table's hash from per-Service hashes.
//!
//! Cache identity: a Service's share ([`Part`]) is a function of the
//! Service, its own slices (in input order) and the node; the compiler
//! keeps a copy of the first two and compares them with the new ones
//! (exact, and cheaper than recompiling by two orders of magnitude). A
//! change of the node starts over.
//!
//! Shared pieces: the verdict maps and the `masq_cluster_ips` sets take
//! one element per Service address and port; should two Services claim
//! the same key (two Services with the same external IP and port), the
//! first in namespace/name order wins, whatever the order of the input
//! and of the passes. The hairpin sets count the Services that need each
//! endpoint. The maps of backends are laid out again, map by map, only
//! where a random choice appeared, went or changed.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use hashbrown::{Equivalent, HashMap};
use sha2::{Digest, Sha256};
use weft_model::{EndpointSlice, IpFamily, Service};
use weft_nft::{Change, NftFamily, diff};

use super::backends::{Pick, offsets};
use super::journal::Tracked;
use super::part::{Part, part};
use super::{ProxyNode, skeleton};
use crate::nft::{Ruleset, TABLE, render_full};

/// A Service by namespace and name.
type Key = (String, String);

/// A [`Key`] borrowed from the input, to look the cache up without
/// allocating: hashes and compares as the owned key.
struct KeyRef<'a>(&'a str, &'a str);

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `(String, String)` hashes.
        (self.0, self.1).hash(state);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// A 256-bit sum of hashes: the table's hash combines per-Service and
/// per-map hashes by adding them, so that a pass updates it for what it
/// changed instead of walking every Service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sum([u64; 4]);

impl Sum {
    /// Adds (`add`) or takes away the hash of `parts`.
    fn apply(&mut self, parts: &[&[u8]], add: bool) {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
            h.update([0]);
        }
        let digest: [u8; 32] = h.finalize().into();
        for (i, word) in self.0.iter_mut().enumerate() {
            let x = u64::from_le_bytes(digest[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            *word = if add {
                word.wrapping_add(x)
            } else {
                word.wrapping_sub(x)
            };
        }
    }
}

/// Compiles the proxy table of one node pass after pass, recompiling only
/// what changed. [`crate::compile`] is one pass of a new compiler: the
/// table after any sequence of passes equals it for the last inputs.
#[derive(Debug, Default)]
pub struct Compiler {
    /// The node of the last pass; `None` before the first.
    node: Option<ProxyNode>,
    table: Option<Tracked>,
    /// SHA-256 of the table without Services (depends on the node alone).
    fixed: [u8; 32],
    services: HashMap<Key, Cached>,
    /// The pass being run (marks the Services it has seen).
    generation: u64,
    /// Sum of the hashes of (Service key, its part's hash).
    parts_sum: Sum,
    /// Sum of the hashes of (map name, its layout's hash).
    layouts_sum: Sum,
    /// (map or set, key) → the value each claiming Service gives it,
    /// sorted by Service (nearly always one).
    claims: HashMap<(String, String), Vec<(Key, String)>>,
    /// Endpoint → how many Services put it in the hairpin set.
    hairpin: HashMap<IpAddr, usize>,
    /// Maps of backends by name.
    backends: BTreeMap<String, BackendMap>,
    /// The table's hash, computed on demand once per pass.
    hash: OnceCell<String>,
}

/// One Service's inputs as last compiled, and its share.
#[derive(Debug)]
struct Cached {
    /// The pass that last saw the Service.
    seen: u64,
    service: Service,
    slices: Vec<EndpointSlice>,
    part: Part,
}

/// The random choices of one map of backends and where they are.
#[derive(Debug, Default)]
struct BackendMap {
    /// Pick chain → its choice.
    picks: BTreeMap<String, Pick>,
    /// Pick chain → (offset, endpoints) as in the table.
    placed: BTreeMap<String, (u64, usize)>,
    /// SHA-256 of the layout (chains and offsets); `None` before the
    /// first layout.
    hash: Option<[u8; 32]>,
    /// A pick appeared, went or changed since the last layout.
    dirty: bool,
}

/// What one [`Compiler::update`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// The change from the previous table to the new one; `full` on the
    /// first pass (there is no previous table).
    pub change: Change,
    /// Services compiled anew (new or changed inputs).
    pub recompiled: usize,
    /// Services whose share was removed (deleted, or no longer proxied).
    pub removed: usize,
}

impl Compiler {
    /// A compiler with nothing compiled yet.
    pub fn new() -> Compiler {
        Compiler::default()
    }

    /// Brings the table to what `services`, `slices` and `node` give, as
    /// [`crate::compile`] would, recompiling only Services whose inputs
    /// differ from the last pass. Headless and ExternalName Services and
    /// slices no Service owns contribute nothing; of two Services with the
    /// same namespace and name only the first counts.
    pub fn update(
        &mut self,
        services: &[Service],
        slices: &[EndpointSlice],
        node: &ProxyNode,
    ) -> Update {
        self.hash = OnceCell::new();
        if self.node.as_ref() == Some(node) {
            let (recompiled, removed) = self.pass(services, slices, node);
            let change = self.tracked().take_change();
            return Update {
                change,
                recompiled,
                removed,
            };
        }
        // A new node changes the shared pieces of every Service: start over.
        let old = std::mem::take(self);
        let ruleset = skeleton(node);
        self.fixed = Sha256::digest(render_full(&ruleset).as_bytes()).into();
        self.table = Some(Tracked::new(ruleset));
        self.node = Some(node.clone());
        let (recompiled, removed) = self.pass(services, slices, node);
        self.tracked().clear();
        let change = match old.table {
            Some(before) => diff(&before.ruleset, self.ruleset()),
            None => Change {
                full: true,
                ..Change::default()
            },
        };
        Update {
            change,
            recompiled,
            removed,
        }
    }

    /// The table as of the last pass.
    pub fn ruleset(&self) -> &Ruleset {
        static EMPTY: std::sync::OnceLock<Ruleset> = std::sync::OnceLock::new();
        match &self.table {
            Some(t) => &t.ruleset,
            None => EMPTY.get_or_init(|| Ruleset::new(TABLE)),
        }
    }

    /// The table as of the last pass, taken out of the compiler.
    pub fn into_ruleset(self) -> Ruleset {
        self.table
            .map_or_else(|| Ruleset::new(TABLE), |t| t.ruleset)
    }

    /// The table's identity (hex SHA-256) for the agent's stamp: the hash
    /// of the node's part and of the sums of each Service's part hash and
    /// each map's layout hash (kept up to date as parts come and go), not
    /// of a rendering of the whole table: O(1) per pass. Equal for equal
    /// tables whatever the passes that led to them.
    pub fn hash(&self) -> &str {
        self.hash.get_or_init(|| {
            let mut h = Sha256::new();
            h.update(self.fixed);
            for word in self.parts_sum.0.iter().chain(&self.layouts_sum.0) {
                h.update(word.to_le_bytes());
            }
            h.finalize()
                .iter()
                .fold(String::with_capacity(64), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                })
        })
    }

    /// Services with a share in the table.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether no Service has a share in the table.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    fn tracked(&mut self) -> &mut Tracked {
        self.table.as_mut().expect("a pass has set the table up")
    }

    /// Recompiles what changed; returns (recompiled, removed).
    fn pass(
        &mut self,
        services: &[Service],
        slices: &[EndpointSlice],
        node: &ProxyNode,
    ) -> (usize, usize) {
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> =
            HashMap::with_capacity(services.len());
        for slice in slices {
            if let Some(service) = &slice.service {
                by_service
                    .entry((slice.namespace.as_str(), service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        self.generation += 1;
        let generation = self.generation;
        let mut recompiled = 0;
        for service in services.iter().filter(|s| s.is_proxied()) {
            let id = (service.namespace.as_str(), service.name.as_str());
            let own = by_service.get(&id).map_or(&[][..], Vec::as_slice);
            let lookup = KeyRef(id.0, id.1);
            if let Some(cached) = self.services.get_mut(&lookup) {
                if cached.seen == generation {
                    continue; // a second Service of the same name
                }
                cached.seen = generation;
                let same_slices = cached.slices.len() == own.len()
                    && cached.slices.iter().zip(own).all(|(a, b)| a == *b);
                if same_slices && cached.service == *service {
                    continue;
                }
                let part = part(service, own, node);
                recompiled += 1;
                if part.hash == cached.part.hash {
                    // Inputs changed, output did not (a not-ready
                    // endpoint, a label): remember the new inputs only.
                    cached.service = service.clone();
                    cached.slices = own.iter().map(|s| (*s).clone()).collect();
                    continue;
                }
                let (key, old) = self.services.remove_entry(&lookup).expect("just found");
                self.unapply(&key, &old.part);
                self.apply(&key, &part);
                self.services
                    .insert(key, cached_of(generation, service, own, part));
            } else {
                let part = part(service, own, node);
                recompiled += 1;
                let key: Key = (id.0.to_owned(), id.1.to_owned());
                self.apply(&key, &part);
                self.services
                    .insert(key, cached_of(generation, service, own, part));
            }
        }
        let gone: Vec<Key> = self
            .services
            .iter()
            .filter(|(_, c)| c.seen != generation)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            let old = self.services.remove(key).expect("listed");
            self.unapply(key, &old.part);
        }
        self.layout();
        (recompiled, gone.len())
    }

    /// Adds the share of Service `key`.
    fn apply(&mut self, key: &Key, part: &Part) {
        self.parts_sum
            .apply(&[key.0.as_bytes(), key.1.as_bytes(), &part.hash], true);
        let table = self.table.as_mut().expect("set up");
        for (name, rules) in &part.chains {
            table.set_chain(name, rules.clone());
        }
        for (name, set) in &part.sets {
            table.add_set(name, set.clone());
        }
        for (map, k, value) in &part.entries {
            self.claim(map, k, key, Some(value), Kind::Map);
        }
        for (set, k) in &part.masq {
            self.claim(set, k, key, Some(""), Kind::Set);
        }
        for ip in &part.hairpin {
            let count = self.hairpin.entry(*ip).or_default();
            *count += 1;
            if *count == 1 {
                let (set, element) = hairpin_element(*ip);
                self.tracked().set_element(set, element, true);
            }
        }
        for pick in &part.picks {
            let map = self.backends.entry(pick.map()).or_default();
            map.picks.insert(pick.chain.clone(), pick.clone());
            map.dirty = true;
        }
    }

    /// Removes the share of Service `key`.
    fn unapply(&mut self, key: &Key, part: &Part) {
        self.parts_sum
            .apply(&[key.0.as_bytes(), key.1.as_bytes(), &part.hash], false);
        let table = self.table.as_mut().expect("set up");
        for name in part.chains.keys() {
            table.remove_chain(name);
        }
        for pick in &part.picks {
            table.remove_chain(&pick.chain);
        }
        for name in part.sets.keys() {
            table.remove_set(name);
        }
        for (map, k, _) in &part.entries {
            self.claim(map, k, key, None, Kind::Map);
        }
        for (set, k) in &part.masq {
            self.claim(set, k, key, None, Kind::Set);
        }
        for ip in &part.hairpin {
            let Some(count) = self.hairpin.get_mut(ip) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.hairpin.remove(ip);
                let (set, element) = hairpin_element(*ip);
                self.tracked().set_element(set, element, false);
            }
        }
        for pick in &part.picks {
            if let Some(map) = self.backends.get_mut(&pick.map()) {
                map.picks.remove(&pick.chain);
                map.dirty = true;
            }
        }
    }

    /// Adds (`Some`) or withdraws (`None`) Service `by`'s claim on `key`
    /// of `name`, and sets the element to the first claimant's value.
    fn claim(&mut self, name: &str, key: &str, by: &Key, value: Option<&str>, kind: Kind) {
        let id = (name.to_owned(), key.to_owned());
        let owners = self.claims.entry(id).or_default();
        let at = owners.binary_search_by(|(k, _)| k.cmp(by));
        match (value, at) {
            (Some(v), Ok(i)) => owners[i].1 = v.to_owned(),
            (Some(v), Err(i)) => owners.insert(i, (by.clone(), v.to_owned())),
            (None, Ok(i)) => {
                owners.remove(i);
            }
            (None, Err(_)) => {}
        }
        let winner = owners.first().map(|(_, v)| v.clone());
        if winner.is_none() {
            self.claims.remove(&(name.to_owned(), key.to_owned()));
        }
        let table = self.table.as_mut().expect("set up");
        match kind {
            Kind::Map => table.map_element(name, key.to_owned(), winner),
            Kind::Set => table.set_element(name, key.to_owned(), winner.is_some()),
        }
    }

    /// Lays out again every map of backends whose picks changed: its
    /// elements and the one rule of each of its pick chains.
    fn layout(&mut self) {
        let table = self.table.as_mut().expect("set up");
        let mut empty = Vec::new();
        for (name, map) in self.backends.iter_mut().filter(|(_, m)| m.dirty) {
            map.dirty = false;
            if let Some(hash) = map.hash.take() {
                self.layouts_sum.apply(&[name.as_bytes(), &hash], false);
            }
            for (offset, n) in std::mem::take(&mut map.placed).into_values() {
                for k in 0..n as u64 {
                    table.map_element(name, (offset + k).to_string(), None);
                }
            }
            let Some(first) = map.picks.values().next() else {
                table.remove_map(name);
                empty.push(name.clone());
                continue;
            };
            table.ensure_map(name, first.map_def());
            let offsets = offsets(map.picks.keys().map(String::as_str));
            let mut h = Sha256::new();
            for (pick, offset) in map.picks.values().zip(offsets) {
                for (k, v) in pick.elements(offset) {
                    table.map_element(name, k, Some(v));
                }
                table.set_chain(&pick.chain, vec![pick.rule(name, offset)]);
                map.placed
                    .insert(pick.chain.clone(), (offset, pick.targets.len()));
                h.update(pick.chain.as_bytes());
                h.update(offset.to_be_bytes());
            }
            let hash: [u8; 32] = h.finalize().into();
            self.layouts_sum.apply(&[name.as_bytes(), &hash], true);
            map.hash = Some(hash);
        }
        for name in empty {
            self.backends.remove(&name);
        }
    }
}

/// Whether a claimed key is a map's element or a set's.
#[derive(Clone, Copy)]
enum Kind {
    Map,
    Set,
}

fn cached_of(seen: u64, service: &Service, own: &[&EndpointSlice], part: Part) -> Cached {
    Cached {
        seen,
        service: service.clone(),
        slices: own.iter().map(|s| (*s).clone()).collect(),
        part,
    }
}

/// The hairpin set of `ip`'s family and its element for `ip`.
fn hairpin_element(ip: IpAddr) -> (&'static str, String) {
    let set = match IpFamily::of(ip) {
        IpFamily::V4 => "hairpin4",
        IpFamily::V6 => "hairpin6",
    };
    debug_assert_eq!(set, format!("hairpin{}", IpFamily::of(ip).suffix()));
    (set, format!("{ip} . {ip}"))
}
