//! Random endpoint choice through shared maps of backends.
//!
//! A pick chain of a Service port without affinity ends in one rule,
//! `meta l4proto tcp dnat ip to numgen random mod N offset B map @M`: a
//! random number in `B..B+N` is looked up in a data map whose elements
//! `B+k : address . port` are the port's `N` endpoints. One rule per
//! Service port instead of a cascade of `N` (`numgen … == 0 dnat …`)
//! rules: at 10,000 Services × 10 endpoints, 100,000 elements load in well
//! under half the time of 100,000 rules, and an endpoint change is a
//! handful of elements plus the one rule whose `N` changed.
//!
//! Why many maps and not one: the kernel validates every rule that binds a
//! map against the map's elements, and every element added against the
//! rules bound to it, so one map shared by 10,000 rules costs
//! quadratically (measured here: 97 s to load 10,000 Services). The ports
//! are spread over [`SHARDS`] maps per family and protocol by a hash of
//! their chain name, which keeps both walks short (about 40 rules and 400
//! elements per map at 10,000 Services). A map exists only while it has
//! elements.
//!
//! The maps are `typeof numgen random mod 1 : ip daddr . tcp dport`: nft
//! has no named type for a `numgen` key (a `mark` map is refused), and the
//! value names the protocol because nft rejects a `th dport` value after a
//! `meta l4proto tcp` match when it reads the map back from the kernel.
//!
//! Offsets: each port gets a slot of [`SLOT`] numbers in its map, at a
//! position derived from the same hash, so that one port's endpoints
//! changing never moves another port's numbers. Two ports whose hashes
//! pick the same slot are resolved in chain-name order (the second takes
//! the next free slot), so the layout is a pure function of the ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use weft_model::{IpFamily, Protocol};
use weft_nft::{NftFamily, short_hash};

use super::chains::protocol_name;
use crate::nft::MapDef;

/// Maps per family and protocol.
pub(crate) const SHARDS: usize = 256;
/// Numbers reserved per Service port in its map: the most endpoints a port
/// can pick through a map (a port with more, unheard of in practice, keeps
/// the rule cascade).
pub(crate) const SLOT: usize = 1 << 16;
/// Slots per map: the offsets `slot × SLOT` fill the 32-bit number space.
const SLOTS_PER_MAP: u32 = (1u64 << 32).div_ceil(SLOT as u64) as u32;

/// The random choices of one Service's ports, waiting for their offsets,
/// which depend on every other port that shares their map.
#[derive(Debug, Default)]
pub(crate) struct Backends {
    pub picks: Vec<Pick>,
}

/// One pick chain's random choice among `targets`. The chain holds nothing
/// but the rule [`Pick::rule`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pick {
    pub chain: String,
    pub family: IpFamily,
    pub protocol: Protocol,
    pub targets: Vec<(IpAddr, u16)>,
}

impl Backends {
    /// Records that `chain` ends in a random choice among `targets` (at
    /// least two, at most [`SLOT`]); the layout of its map gives it an
    /// offset ([`offsets`]), then its rule and elements.
    pub fn push(
        &mut self,
        chain: String,
        family: IpFamily,
        protocol: Protocol,
        targets: Vec<(IpAddr, u16)>,
    ) {
        debug_assert!((2..=SLOT).contains(&targets.len()));
        self.picks.push(Pick {
            chain,
            family,
            protocol,
            targets,
        });
    }
}

impl Pick {
    /// The name of the map holding this pick's backends.
    pub fn map(&self) -> String {
        let (shard, _) = place(&self.chain);
        format!(
            "backends{}-{}-{shard:02x}",
            self.family.suffix(),
            protocol_name(self.protocol)
        )
    }

    /// The (empty) map of backends this pick goes into.
    pub fn map_def(&self) -> MapDef {
        MapDef {
            key_type: "typeof numgen random mod 1".to_owned(),
            value_type: format!(
                "{} daddr . {} dport",
                self.family.keyword(),
                protocol_name(self.protocol)
            ),
            elements: BTreeMap::new(),
        }
    }

    /// The map's elements for this pick at `offset`: `offset + k` to the
    /// `k`th endpoint.
    pub fn elements(&self, offset: u64) -> impl Iterator<Item = (String, String)> + '_ {
        self.targets
            .iter()
            .enumerate()
            .map(move |(k, (ip, port))| ((offset + k as u64).to_string(), format!("{ip} . {port}")))
    }

    /// The chain's one rule at `offset` in map `map`.
    pub fn rule(&self, map: &str, offset: u64) -> String {
        format!(
            "meta l4proto {} dnat {} to numgen random mod {} offset {offset} map @{map}",
            protocol_name(self.protocol),
            self.family.keyword(),
            self.targets.len()
        )
    }
}

/// The offsets of the picks of one map, given in chain-name order: each
/// takes its preferred slot, or the next one an earlier pick left free.
pub(crate) fn offsets<'a>(chains: impl IntoIterator<Item = &'a str>) -> Vec<u64> {
    let mut used = BTreeSet::new();
    chains
        .into_iter()
        .map(|chain| {
            let (_, preferred) = place(chain);
            // At most 256 ports per map at a million Services: a free slot
            // is always near.
            let slot = (0..SLOTS_PER_MAP)
                .map(|i| preferred.wrapping_add(i) % SLOTS_PER_MAP)
                .find(|s| !used.contains(s))
                .expect("fewer ports per map than slots");
            used.insert(slot);
            slot as u64 * SLOT as u64
        })
        .collect()
}

/// The map (shard) and preferred slot of the pick chain `chain`.
fn place(chain: &str) -> (u8, u32) {
    let hash = u64::from_str_radix(&short_hash(chain), 16).expect("short_hash is 16 hex digits");
    let shard = (hash >> 56) as usize % SHARDS;
    (shard as u8, (hash as u32) % SLOTS_PER_MAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out every pick as the compiler does, map by map in chain
    /// order: each chain gets its rule, the maps their elements.
    fn finish(b: Backends, chains: &mut BTreeMap<String, Vec<String>>) -> BTreeMap<String, MapDef> {
        let mut by_map: BTreeMap<String, BTreeMap<String, Pick>> = BTreeMap::new();
        for pick in b.picks {
            by_map
                .entry(pick.map())
                .or_default()
                .insert(pick.chain.clone(), pick);
        }
        let mut maps = BTreeMap::new();
        for (name, picks) in by_map {
            let offsets = offsets(picks.keys().map(String::as_str));
            let mut def = picks.values().next().unwrap().map_def();
            for (pick, offset) in picks.values().zip(offsets) {
                def.elements.extend(pick.elements(offset));
                chains
                    .entry(pick.chain.clone())
                    .or_default()
                    .push(pick.rule(&name, offset));
            }
            maps.insert(name, def);
        }
        maps
    }

    fn targets(n: u8) -> Vec<(IpAddr, u16)> {
        (1..=n)
            .map(|i| (IpAddr::from([10, 0, 0, i]), 8080))
            .collect()
    }

    #[test]
    fn one_rule_and_one_element_per_endpoint() {
        let mut b = Backends::default();
        b.push("svc4-a".into(), IpFamily::V4, Protocol::Tcp, targets(3));
        let mut chains = BTreeMap::from([("svc4-a".to_owned(), vec!["first".to_owned()])]);
        let maps = finish(b, &mut chains);
        let (shard, slot) = place("svc4-a");
        let name = format!("backends4-tcp-{shard:02x}");
        let offset = slot as u64 * SLOT as u64;
        assert_eq!(
            chains["svc4-a"],
            [
                "first".to_owned(),
                format!(
                    "meta l4proto tcp dnat ip to numgen random mod 3 offset {offset} map @{name}"
                )
            ]
        );
        let map = &maps[&name];
        assert_eq!(map.key_type, "typeof numgen random mod 1");
        assert_eq!(map.value_type, "ip daddr . tcp dport");
        let want: BTreeMap<String, String> = (0..3)
            .map(|k| ((offset + k).to_string(), format!("10.0.0.{} . 8080", k + 1)))
            .collect();
        assert_eq!(map.elements, want);
    }

    #[test]
    fn v6_and_protocol_pick_their_own_map() {
        let mut b = Backends::default();
        let v6 = vec![
            ("fd00::1".parse().unwrap(), 53),
            ("fd00::2".parse().unwrap(), 53),
        ];
        b.push("svc6-x".into(), IpFamily::V6, Protocol::Udp, v6);
        let mut chains = BTreeMap::new();
        let maps = finish(b, &mut chains);
        let (name, map) = maps.iter().next().unwrap();
        assert!(name.starts_with("backends6-udp-"), "{name}");
        assert_eq!(map.value_type, "ip6 daddr . udp dport");
        assert!(map.elements.values().any(|v| v == "fd00::2 . 53"));
        assert!(chains["svc6-x"][0].contains("dnat ip6 to numgen random mod 2 offset"));
    }

    #[test]
    fn colliding_slots_are_resolved_by_name_and_stay_apart() {
        // Many ports in few maps: every port gets a slot of its own, and the
        // layout does not depend on the order the ports came in.
        let run = |order: &[usize]| {
            let mut b = Backends::default();
            for &i in order {
                b.push(format!("svc4-{i}"), IpFamily::V4, Protocol::Tcp, targets(2));
            }
            let mut chains = BTreeMap::new();
            let maps = finish(b, &mut chains);
            (chains, maps)
        };
        let forward: Vec<usize> = (0..5000).collect();
        let backward: Vec<usize> = (0..5000).rev().collect();
        let (chains, maps) = run(&forward);
        assert_eq!((chains.clone(), maps.clone()), run(&backward));
        let elements: usize = maps.values().map(|m| m.elements.len()).sum();
        assert_eq!(elements, 10_000, "no two ports share a number");
    }

    #[test]
    fn a_port_keeps_its_offset_when_another_changes() {
        let layout = |other: u8| {
            let mut b = Backends::default();
            b.push("svc4-a".into(), IpFamily::V4, Protocol::Tcp, targets(4));
            b.push("svc4-b".into(), IpFamily::V4, Protocol::Tcp, targets(other));
            let mut chains = BTreeMap::new();
            finish(b, &mut chains);
            chains.remove("svc4-a").unwrap()
        };
        assert_eq!(layout(2), layout(9));
    }
}
