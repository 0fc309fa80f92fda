//! What one Service contributes to the table ([`Part`]): its chains and
//! affinity sets, its elements of the shared verdict maps and sets, the
//! endpoints it adds to the hairpin set, and its random choices waiting
//! for their place in the shared maps of backends. A function of the
//! Service, its slices and the node alone, so that it can be cached and
//! reused as long as those do not change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use weft_model::{EndpointSlice, IpFamily, Service, TrafficPolicy};
use weft_nft::NftFamily;

use super::backends::Pick;
use super::chains::{Entry, Output, PortPlan, protocol_name};
use super::{ProxyNode, REJECT_CHAIN, endpoints, may_hairpin, sanitize};
use crate::nft::SetDef;

/// One Service's share of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Part {
    /// Chains it owns, by name (not the pick chains of [`Part::picks`],
    /// whose one rule depends on the layout of their map).
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity sets it owns, by name.
    pub sets: BTreeMap<String, SetDef>,
    /// Elements of the shared verdict maps: (map, key, verdict).
    pub entries: Vec<(String, String, String)>,
    /// Elements of the shared `masq_cluster_ips` sets: (set, key).
    pub masq: Vec<(String, String)>,
    /// Endpoints that may hairpin on this node.
    pub hairpin: BTreeSet<IpAddr>,
    /// Random choices through shared maps of backends.
    pub picks: Vec<Pick>,
    /// SHA-256 of everything above, in a fixed order: the part's identity
    /// in the table's hash.
    pub hash: [u8; 32],
}

/// Compiles the share of `service` (a proxied one), given its own slices.
pub(crate) fn part(service: &Service, own: &[&EndpointSlice], node: &ProxyNode) -> Part {
    let mut out = Output::default();
    let mut part = Part::default();
    for port in &service.ports {
        let proto = protocol_name(port.protocol);
        for family in &service.ip_families {
            let (f, s) = (*family, family.suffix());
            let of_family = |ip: &&IpAddr| IpFamily::of(**ip) == f;
            let cluster = endpoints::targets(service, port, f, own, &node.name);
            let port_label = port.name.clone().unwrap_or_else(|| port.port.to_string());
            let plan = PortPlan {
                key: format!(
                    "{}/{}/{proto}/{}/{s}",
                    service.namespace, service.name, port_label
                ),
                label: sanitize(&format!(
                    "{}/{}/{proto}/{port_label}",
                    service.namespace, service.name
                )),
                family: f,
                protocol: port.protocol,
                cluster: &cluster,
                affinity: service.session_affinity,
                external_policy: service.external_traffic_policy,
            };

            let mut internal = plan.internal(service.internal_traffic_policy, &mut out);
            // `internalTrafficPolicy: Local` without a local endpoint while
            // the Service has endpoints elsewhere: kube-proxy drops, it
            // rejects only a Service without any endpoint.
            if internal == Entry::Reject
                && service.internal_traffic_policy == TrafficPolicy::Local
                && !cluster.is_empty()
            {
                internal = Entry::Drop;
            }
            // Traffic from outside the cluster CIDRs (when known) to a
            // cluster IP that picks among all endpoints is masqueraded
            // (kube-proxy with `--cluster-cidr`): one set looked up in the
            // hooked chains rather than a rule in every pick chain.
            let masquerade = matches!(internal, Entry::Chain(_))
                && service.internal_traffic_policy == TrafficPolicy::Cluster
                && node
                    .cluster_cidrs
                    .iter()
                    .any(|n| IpFamily::of(n.addr()) == f);
            for ip in service.cluster_ips.iter().filter(of_family) {
                let key = format!("{ip} . {proto} . {}", port.port);
                if masquerade {
                    part.masq
                        .push((format!("masq_cluster_ips{s}"), key.clone()));
                }
                part.entry("service_ips", "no_endpoints", s, key, &internal);
            }

            let externals: Vec<&IpAddr> = service
                .external_ips
                .iter()
                .chain(&service.load_balancer_ips)
                .filter(of_family)
                .collect();
            let node_port = port.node_port.filter(|_| service.has_node_ports());
            if externals.is_empty() && node_port.is_none() {
                continue;
            }
            let external = plan.external(&mut out);
            for ip in externals {
                let key = format!("{ip} . {proto} . {}", port.port);
                part.entry("service_ips", "no_endpoints", s, key, &external);
            }
            if let Some(node_port) = node_port {
                let key = format!("{proto} . {node_port}");
                part.entry(
                    "service_nodeports",
                    "no_endpoint_nodeports",
                    s,
                    key,
                    &external,
                );
            }
        }
    }
    part.picks = std::mem::take(&mut out.backends.picks);
    // The pick chains are the layout's: their one rule needs the offset.
    for pick in &part.picks {
        let rules = out.chains.remove(&pick.chain);
        debug_assert!(rules.is_some_and(|r| r.is_empty()), "{}", pick.chain);
    }
    part.chains = out.chains;
    part.sets = out.sets;
    part.hairpin = out
        .hairpin
        .into_iter()
        .filter(|ip| may_hairpin(node, *ip))
        .collect();
    part.hash = part.digest();
    part
}

impl Part {
    /// Adds `key` to the family's `map` (traffic goes to a chain) or to its
    /// `reject_map` (no endpoint).
    fn entry(&mut self, map: &str, reject_map: &str, suffix: &str, key: String, entry: &Entry) {
        let (name, verdict) = match entry {
            Entry::Chain(chain) => (map, format!("goto {chain}")),
            Entry::Drop => (map, "drop".to_owned()),
            Entry::Reject => (reject_map, format!("goto {REJECT_CHAIN}")),
        };
        self.entries.push((format!("{name}{suffix}"), key, verdict));
    }

    /// The hash of the part's content, each piece introduced by a tag and
    /// each text ended by a NUL so that no two contents hash alike.
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut text = |tag: &str, parts: &[&str]| {
            h.update(tag.as_bytes());
            for p in parts {
                h.update(p.as_bytes());
                h.update([0]);
            }
        };
        for (name, rules) in &self.chains {
            text("chain", &[name]);
            for rule in rules {
                text("rule", &[rule]);
            }
        }
        for (name, set) in &self.sets {
            text("set", &[name, &set.typ, &set.flags.join(",")]);
        }
        for (map, key, value) in &self.entries {
            text("entry", &[map, key, value]);
        }
        for (set, key) in &self.masq {
            text("masq", &[set, key]);
        }
        for ip in &self.hairpin {
            text("hairpin", &[&ip.to_string()]);
        }
        for pick in &self.picks {
            text("pick", &[&pick.chain, &pick.map()]);
            for (ip, port) in &pick.targets {
                text("target", &[&ip.to_string(), &port.to_string()]);
            }
        }
        h.finalize().into()
    }
}
