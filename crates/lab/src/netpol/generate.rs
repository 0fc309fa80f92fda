//! Random NetworkPolicies for differential testing, reproducible from a
//! seed.
//!
//! Policies are generated as manifests (JSON documents), so that they go
//! through `apply` and the model's validation exactly like a user's, and
//! over a [`Universe`]: the namespaces, pods, labels, container ports and
//! pod CIDRs of a lab model, so that selectors, named ports and `ipBlock`s
//! hit (and miss) real pods. Every generated policy is valid: a random
//! cluster is only useful for differential testing when the API server
//! would accept it.
//!
//! The RNG is a 64-bit xorshift* seeded through splitmix64 — no dependency,
//! and the sequence of a seed never changes with a crate upgrade, so a
//! failing seed printed by a test reproduces forever.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};
use weft_model::Protocol;

use crate::model::{self, Model, ModelKind};
use crate::objects::{NAMESPACE_NAME_LABEL, port_name};

/// A label key that no object of a model carries: `Exists` on it matches
/// nothing, `DoesNotExist` everything.
const ABSENT_KEY: &str = "weft-absent";

/// A label value that no object carries.
const ABSENT_VALUE: &str = "none";

/// A named port that no container declares.
const ABSENT_PORT_NAME: &str = "serve-99-tcp";

/// A small, fast, seedable pseudo-random generator (xorshift64*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose sequence is fixed by `seed` (any value, 0 too).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 spreads similar seeds apart and never yields the
        // all-zero state xorshift cannot leave.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng {
            state: if z == 0 { 0x2545_f491_4f6c_dd1d } else { z },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        // The modulo bias is below 2^-50 for the small n used here.
        (self.next_u64() % n as u64) as usize
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One item of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What generated policies refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Universe {
    /// Namespaces and pods (with labels and served ports).
    pub model: Model,
    /// The pod CIDRs `ipBlock`s are drawn around.
    pub pod_cidrs: Vec<IpNet>,
}

impl Universe {
    /// The netpol model (x, y, z × a, b, c) with the lab's pod CIDRs.
    pub fn netpol(pod_cidrs: &[IpNet]) -> Universe {
        Universe {
            model: model::build(ModelKind::Netpol, &[]),
            pod_cidrs: pod_cidrs.to_vec(),
        }
    }

    /// Label keys and their values across `labels`.
    fn label_space<'a>(
        labels: impl Iterator<Item = &'a BTreeMap<String, String>>,
    ) -> Vec<(String, Vec<String>)> {
        let mut space: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in labels {
            for (k, v) in l {
                let values = space.entry(k.clone()).or_default();
                if !values.contains(v) {
                    values.push(v.clone());
                }
            }
        }
        space.into_iter().collect()
    }

    fn pod_labels(&self) -> Vec<(String, Vec<String>)> {
        Self::label_space(self.model.pods.iter().map(|p| &p.labels))
    }

    /// Namespace labels, with the one the API server adds to each.
    fn namespace_labels(&self) -> Vec<(String, Vec<String>)> {
        let with_name: Vec<BTreeMap<String, String>> = self
            .model
            .namespaces
            .iter()
            .map(|(name, labels)| {
                let mut l = labels.clone();
                l.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
                l
            })
            .collect();
        Self::label_space(with_name.iter())
    }

    fn port_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for pod in &self.model.pods {
            for (protocol, port) in &pod.ports {
                let name = port_name(*protocol, *port);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    fn port_numbers(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .model
            .pods
            .iter()
            .flat_map(|p| p.ports.iter().map(|(_, n)| *n))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// `count` policies named `gen-0`, `gen-1`, … from `seed`.
pub fn policies(seed: u64, universe: &Universe, count: usize) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| policy(&mut rng, universe, &format!("gen-{i}")))
        .collect()
}

/// One valid random policy called `name` in one of the universe's
/// namespaces.
pub fn policy(rng: &mut Rng, u: &Universe, name: &str) -> Value {
    let namespace = &rng.pick(&u.model.namespaces).0;
    let mut spec = Map::new();
    spec.insert(
        "podSelector".into(),
        if rng.chance(30) {
            json!({})
        } else {
            selector(rng, &u.pod_labels())
        },
    );
    match rng.below(4) {
        0 => {}
        1 => {
            spec.insert("policyTypes".into(), json!(["Ingress"]));
        }
        2 => {
            spec.insert("policyTypes".into(), json!(["Egress"]));
        }
        _ => {
            spec.insert("policyTypes".into(), json!(["Ingress", "Egress"]));
        }
    }
    for (field, peers_field) in [("ingress", "from"), ("egress", "to")] {
        // Absent, empty (both: nothing allowed), or 1-3 rules.
        match rng.below(8) {
            0 | 1 => {}
            2 => {
                spec.insert(field.into(), json!([]));
            }
            _ => {
                let n = rng.range(1, 3) as usize;
                let rules: Vec<Value> = (0..n).map(|_| rule(rng, u, peers_field)).collect();
                spec.insert(field.into(), Value::Array(rules));
            }
        }
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

fn rule(rng: &mut Rng, u: &Universe, peers_field: &str) -> Value {
    let mut rule = Map::new();
    // Absent and empty lists both mean "all"; generate both spellings.
    match rng.below(5) {
        0 => {}
        1 => {
            rule.insert(peers_field.into(), json!([]));
        }
        _ => {
            let n = rng.range(1, 2) as usize;
            let peers: Vec<Value> = (0..n).map(|_| peer(rng, u)).collect();
            rule.insert(peers_field.into(), Value::Array(peers));
        }
    }
    match rng.below(5) {
        0 => {}
        1 => {
            rule.insert("ports".into(), json!([]));
        }
        _ => {
            let n = rng.range(1, 2) as usize;
            let ports: Vec<Value> = (0..n).map(|_| port(rng, u)).collect();
            rule.insert("ports".into(), Value::Array(ports));
        }
    }
    Value::Object(rule)
}

fn peer(rng: &mut Rng, u: &Universe) -> Value {
    let pods = || u.pod_labels();
    match rng.below(7) {
        0 | 1 => json!({"podSelector": selector_or_empty(rng, &pods())}),
        2 | 3 => json!({"namespaceSelector": selector_or_empty(rng, &u.namespace_labels())}),
        4 | 5 => json!({
            "namespaceSelector": selector_or_empty(rng, &u.namespace_labels()),
            "podSelector": selector_or_empty(rng, &pods()),
        }),
        _ if u.pod_cidrs.is_empty() => json!({"podSelector": {}}),
        _ => json!({"ipBlock": ip_block(rng, u)}),
    }
}

fn selector_or_empty(rng: &mut Rng, space: &[(String, Vec<String>)]) -> Value {
    if rng.chance(20) {
        json!({})
    } else {
        selector(rng, space)
    }
}

/// A non-empty selector over `space` (plus a key and a value no object
/// has, so that selectors also miss).
fn selector(rng: &mut Rng, space: &[(String, Vec<String>)]) -> Value {
    let mut out = Map::new();
    let with_labels = rng.chance(60);
    if with_labels {
        let (key, values) = rng.pick(space);
        let value = if rng.chance(10) {
            ABSENT_VALUE.to_owned()
        } else {
            rng.pick(values).clone()
        };
        out.insert("matchLabels".into(), json!({ key: value }));
    }
    let expressions = if with_labels {
        rng.below(2)
    } else {
        rng.range(1, 2) as usize
    };
    if expressions > 0 {
        let reqs: Vec<Value> = (0..expressions).map(|_| requirement(rng, space)).collect();
        out.insert("matchExpressions".into(), Value::Array(reqs));
    }
    Value::Object(out)
}

fn requirement(rng: &mut Rng, space: &[(String, Vec<String>)]) -> Value {
    let (key, values) = if rng.chance(10) {
        (ABSENT_KEY, &[ABSENT_VALUE.to_owned()][..])
    } else {
        let (k, v) = rng.pick(space);
        (k.as_str(), v.as_slice())
    };
    match rng.below(4) {
        op @ (0 | 1) => {
            let mut chosen: Vec<String> = Vec::new();
            for _ in 0..rng.range(1, 2) {
                let v = if rng.chance(10) {
                    ABSENT_VALUE.to_owned()
                } else {
                    rng.pick(values).clone()
                };
                if !chosen.contains(&v) {
                    chosen.push(v);
                }
            }
            let op = if op == 0 { "In" } else { "NotIn" };
            json!({"key": key, "operator": op, "values": chosen})
        }
        2 => json!({"key": key, "operator": "Exists"}),
        _ => json!({"key": key, "operator": "DoesNotExist"}),
    }
}

/// An `ipBlock` around one of the pod CIDRs: the CIDR itself, a supernet
/// of it, or the whole family; with up to two `except`s inside it, near
/// the pod CIDR so that they matter.
fn ip_block(rng: &mut Rng, u: &Universe) -> Value {
    let pods = *rng.pick(&u.pod_cidrs);
    let cidr = match rng.below(4) {
        0 => pods,
        1 => {
            let widen = rng.range(1, 8) as u8;
            supernet(pods, pods.prefix_len().saturating_sub(widen))
        }
        2 => supernet(pods, 0),
        _ => {
            let prefix = rng.range(
                u64::from(pods.prefix_len()),
                u64::from(pods.max_prefix_len()),
            );
            subnet_near(rng, pods, prefix as u8)
        }
    };
    let mut block = Map::new();
    block.insert("cidr".into(), json!(cidr.to_string()));
    if cidr.prefix_len() < cidr.max_prefix_len() && rng.chance(50) {
        let mut except: Vec<String> = Vec::new();
        for _ in 0..rng.range(1, 2) {
            let prefix = rng.range(
                u64::from(cidr.prefix_len()) + 1,
                u64::from(cidr.max_prefix_len()),
            ) as u8;
            // Inside the pod CIDR when that lies inside `cidr`, so that
            // the exception cuts out pods.
            let around = if cidr.contains(&pods) { pods } else { cidr };
            let e = subnet_near(rng, around, prefix.max(around.prefix_len()));
            let e = supernet(e, prefix).to_string();
            if !except.contains(&e) {
                except.push(e);
            }
        }
        block.insert("except".into(), json!(except));
    }
    Value::Object(block)
}

/// `net` widened to `prefix` bits (host bits cleared).
fn supernet(net: IpNet, prefix: u8) -> IpNet {
    IpNet::new(net.network(), prefix.min(net.prefix_len()))
        .map(|n| n.trunc())
        .unwrap_or(net)
}

/// A random subnet of `net` with `prefix` bits (≥ `net`'s prefix).
fn subnet_near(rng: &mut Rng, net: IpNet, prefix: u8) -> IpNet {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    let offset = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
    let offset = if host_bits == 0 {
        0
    } else if host_bits >= 128 {
        offset
    } else {
        offset & ((1u128 << host_bits) - 1)
    };
    let addr = match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) | offset as u32).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) | offset).into()),
    };
    IpNet::new(addr, prefix.clamp(net.prefix_len(), net.max_prefix_len()))
        .map(|n| n.trunc())
        .unwrap_or(net)
}

fn port(rng: &mut Rng, u: &Universe) -> Value {
    let protocol = match rng.below(10) {
        0..=4 => Protocol::Tcp,
        5..=8 => Protocol::Udp,
        _ => Protocol::Sctp,
    };
    let mut out = Map::new();
    // An absent protocol is TCP; spell it out only sometimes.
    if protocol != Protocol::Tcp || rng.chance(50) {
        out.insert(
            "protocol".into(),
            json!(weft_probe::protocol_name(protocol)),
        );
    }
    let numbers = u.port_numbers();
    match rng.below(8) {
        0 => {}
        1 | 2 => {
            let names = u.port_names();
            let name = if rng.chance(15) || names.is_empty() {
                ABSENT_PORT_NAME.to_owned()
            } else {
                rng.pick(&names).clone()
            };
            out.insert("port".into(), json!(name));
        }
        3 | 4 if !numbers.is_empty() => {
            let first = rng
                .pick(&numbers)
                .saturating_sub(rng.below(2) as u16)
                .max(1);
            let last = first.saturating_add(rng.below(3) as u16);
            out.insert("port".into(), json!(first));
            out.insert("endPort".into(), json!(last));
        }
        _ if !numbers.is_empty() && rng.chance(90) => {
            out.insert("port".into(), json!(rng.pick(&numbers)));
        }
        _ => {
            out.insert("port".into(), json!(rng.range(1, 65535)));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
#[path = "generate_tests.rs"]
mod tests;
