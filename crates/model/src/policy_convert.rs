//! NetworkPolicy from `k8s-openapi`, validated as the API server validates it.
//!
//! The checks mirror `ValidateNetworkPolicySpec`, `ValidateNetworkPolicyPort`,
//! `ValidateNetworkPolicyPeer` and `ValidateIPBlock` in upstream
//! `pkg/apis/networking/validation/validation.go`, and the defaulting of
//! `policyTypes` mirrors `SetDefaults_NetworkPolicy` in
//! `pkg/apis/networking/v1/defaults.go`. A policy that fails is rejected as a
//! whole with an [`Error::Field`] naming the policy and the field path; it
//! never affects the conversion of any other policy, because each policy is
//! converted on its own.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::convert::{DEFAULT_NAMESPACE, decode_raw};
use crate::error::Error;
use crate::objects::Protocol;
use crate::policy::{
    Direction, IpBlock, NetworkPolicy, Peer, PolicyPort, PolicyRule, PolicyTypes, PortMatch,
};
use crate::selector::{LabelSelector, exact};

const KIND: &str = "NetworkPolicy";
/// `IsValidPortName`: an IANA service name is at most 15 characters.
const MAX_PORT_NAME_LEN: usize = 15;

/// A validation failure: field path and reason, before the policy is named.
pub(crate) type Invalid = (String, String);

impl TryFrom<&net::NetworkPolicy> for NetworkPolicy {
    type Error = Error;

    fn try_from(policy: &net::NetworkPolicy) -> Result<Self, Error> {
        let name = match policy.metadata.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => return Err(Error::MissingName { kind: KIND }),
        };
        let namespace = policy
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        let spec = policy.spec.clone().unwrap_or_default();
        convert_spec(&spec)
            .map(|(pod_selector, policy_types, ingress, egress)| Self {
                namespace: namespace.clone(),
                name: name.clone(),
                pod_selector,
                policy_types,
                ingress,
                egress,
            })
            .map_err(|(field, reason)| Error::Field {
                kind: KIND,
                object: format!("{namespace}/{name}"),
                field,
                reason,
            })
    }
}

impl NetworkPolicy {
    /// Decodes and converts a raw manifest document (as kept in
    /// `Object::Other`) that is a `networking.k8s.io/v1` NetworkPolicy.
    pub fn from_value(raw: &serde_json::Value) -> Result<Self, Error> {
        let policy: net::NetworkPolicy = decode_raw(raw, KIND)?;
        Self::try_from(&policy)
    }
}

type Spec = (LabelSelector, PolicyTypes, Vec<PolicyRule>, Vec<PolicyRule>);

fn convert_spec(spec: &net::NetworkPolicySpec) -> Result<Spec, Invalid> {
    let pod_selector = match &spec.pod_selector {
        Some(s) => selector(s, "spec.podSelector".to_owned())?,
        None => LabelSelector::default(),
    };
    let ingress = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| convert_rule(Direction::Ingress, i, r.from.as_deref(), r.ports.as_deref()))
        .collect::<Result<Vec<_>, _>>()
        .map(exact)?;
    let egress = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| convert_rule(Direction::Egress, i, r.to.as_deref(), r.ports.as_deref()))
        .collect::<Result<Vec<_>, _>>()
        .map(exact)?;
    let policy_types = policy_types(spec.policy_types.as_deref(), !egress.is_empty())?;
    Ok((pod_selector, policy_types, ingress, egress))
}

/// Resolves `policyTypes`. Validation: at most two entries, each `Ingress` or
/// `Egress`. Defaulting, when the list is absent or empty: Ingress always,
/// Egress when there is at least one egress rule (`len(spec.Egress) != 0`, so
/// `egress: []` does not count).
fn policy_types(types: Option<&[String]>, has_egress_rules: bool) -> Result<PolicyTypes, Invalid> {
    let types = types.unwrap_or_default();
    if types.is_empty() {
        return Ok(PolicyTypes {
            ingress: true,
            egress: has_egress_rules,
        });
    }
    if types.len() > 2 {
        return Err((
            "spec.policyTypes".to_owned(),
            "may not specify more than two policyTypes".to_owned(),
        ));
    }
    let mut resolved = PolicyTypes::default();
    for (i, t) in types.iter().enumerate() {
        match t.as_str() {
            "Ingress" => resolved.ingress = true,
            "Egress" => resolved.egress = true,
            other => {
                return Err((
                    format!("spec.policyTypes[{i}]"),
                    format!("{other:?}: supported values: \"Ingress\", \"Egress\""),
                ));
            }
        }
    }
    Ok(resolved)
}

fn convert_rule(
    direction: Direction,
    index: usize,
    peers: Option<&[net::NetworkPolicyPeer]>,
    ports: Option<&[net::NetworkPolicyPort]>,
) -> Result<PolicyRule, Invalid> {
    let path = format!("spec.{}[{index}]", direction.rules_field());
    let ports = ports
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(j, p)| convert_port(p, &format!("{path}.ports[{j}]")))
        .collect::<Result<_, _>>()
        .map(exact)?;
    let peers = peers
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(j, p)| convert_peer(p, &format!("{path}.{}[{j}]", direction.peers_field())))
        .collect::<Result<_, _>>()
        .map(exact)?;
    Ok(PolicyRule { peers, ports })
}

/// `ValidateNetworkPolicyPort`: protocol TCP/UDP/SCTP; a numeric port in
/// 1-65535; `endPort` only with a numeric `port`, in 1-65535 and `>= port`;
/// a named port a valid IANA service name.
fn convert_port(port: &net::NetworkPolicyPort, path: &str) -> Result<PolicyPort, Invalid> {
    let invalid = |leaf: &str, reason: String| (format!("{path}.{leaf}"), reason);
    let protocol = match port.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(text) => Protocol::parse(text).ok_or_else(|| {
            invalid(
                "protocol",
                format!("{text:?}: supported values: \"TCP\", \"UDP\", \"SCTP\""),
            )
        })?,
    };
    let valid_number = |leaf: &str, n: i32| {
        u16::try_from(n)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(leaf, format!("{n}: must be between 1 and 65535, inclusive")))
    };
    let port_match = match (&port.port, port.end_port) {
        (None, None) => None,
        (None, Some(end)) => {
            return Err(invalid(
                "endPort",
                format!("{end}: may not be specified when `port` is not specified"),
            ));
        }
        (Some(IntOrString::Int(n)), end) => {
            let first = valid_number("port", *n)?;
            let last = match end {
                None => first,
                Some(end) => {
                    if end < *n {
                        return Err(invalid(
                            "endPort",
                            format!("{end}: must be greater than or equal to `port`"),
                        ));
                    }
                    valid_number("endPort", end)?
                }
            };
            Some(PortMatch::Range { first, last })
        }
        (Some(IntOrString::String(name)), end) => {
            if let Some(end) = end {
                return Err(invalid(
                    "endPort",
                    format!("{end}: may not be specified when `port` is non-numeric"),
                ));
            }
            validate_port_name(name)
                .map_err(|reason| invalid("port", format!("{name:?}: {reason}")))?;
            Some(PortMatch::Named(name.clone()))
        }
    };
    Ok(PolicyPort {
        protocol,
        port: port_match,
    })
}

/// `IsValidPortName`: 1-15 characters of `[a-z0-9-]`, at least one letter, no
/// leading, trailing or consecutive hyphens.
pub(crate) fn validate_port_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_PORT_NAME_LEN {
        return Err("must be 1-15 characters");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        return Err("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        return Err("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must not begin or end with a hyphen");
    }
    Ok(())
}

/// `ValidateNetworkPolicyPeer`: at least one of the three; `ipBlock` alone.
fn convert_peer(peer: &net::NetworkPolicyPeer, path: &str) -> Result<Peer, Invalid> {
    let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match &peer.ip_block {
        Some(_) if has_selector => Err((
            path.to_owned(),
            "may not specify both ipBlock and another peer".to_owned(),
        )),
        Some(block) => convert_ip_block(block, &format!("{path}.ipBlock")).map(Peer::IpBlock),
        None if !has_selector => Err((path.to_owned(), "must specify a peer".to_owned())),
        None => Ok(Peer::Selector {
            namespace_selector: peer
                .namespace_selector
                .as_ref()
                .map(|s| selector(s, format!("{path}.namespaceSelector")))
                .transpose()?,
            pod_selector: peer
                .pod_selector
                .as_ref()
                .map(|s| selector(s, format!("{path}.podSelector")))
                .transpose()?,
        }),
    }
}

/// `ValidateIPBlock`: `cidr` required and valid; each `except` valid and a
/// strict subset of `cidr` ("must be a strict subset of `cidr`": inside it,
/// with a longer prefix, hence also of the same family).
fn convert_ip_block(block: &net::IPBlock, path: &str) -> Result<IpBlock, Invalid> {
    if block.cidr.is_empty() {
        return Err((format!("{path}.cidr"), "Required value".to_owned()));
    }
    let cidr = parse_legacy_cidr(&block.cidr).map_err(|r| (format!("{path}.cidr"), r))?;
    let texts = block.except.as_deref().unwrap_or_default();
    let mut except = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let field = format!("{path}.except[{i}]");
        let net = parse_legacy_cidr(text).map_err(|r| (field.clone(), r))?;
        if !cidr.contains(&net.network()) || net.prefix_len() <= cidr.prefix_len() {
            return Err((
                field,
                format!("{text:?}: must be a strict subset of `cidr` ({cidr})"),
            ));
        }
        except.push(net);
    }
    Ok(IpBlock { cidr, except })
}

/// Parses an `ipBlock` CIDR. `cidr` and `except` are "legacy" fields upstream
/// (`IsValidCIDRForLegacyField`): policies stored before strict validation may
/// carry host bits (`10.0.0.1/24`), and the API server still serves them;
/// Go's `ParseCIDR` then uses the network (`10.0.0.0/24`), and so does weft —
/// refusing such a policy would silently drop its isolation. Text that is not
/// a CIDR at all is rejected.
fn parse_legacy_cidr(text: &str) -> Result<IpNet, String> {
    let (addr, len) = text.split_once('/').ok_or_else(|| {
        format!("{text:?}: must be a valid CIDR value (e.g. 10.9.8.0/24 or 2001:db8::/64)")
    })?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|e| format!("{text:?}: must be a valid CIDR value: address: {e}"))?;
    let len: u8 = len
        .parse()
        .map_err(|e| format!("{text:?}: must be a valid CIDR value: prefix length: {e}"))?;
    IpNet::new(addr, len)
        .map(|n| n.trunc())
        .map_err(|e| format!("{text:?}: must be a valid CIDR value: {e}"))
}

fn selector(s: &meta::LabelSelector, path: String) -> Result<LabelSelector, Invalid> {
    LabelSelector::from_k8s(s).map_err(|e| (path, e.to_string()))
}

#[cfg(test)]
#[path = "policy_convert_tests.rs"]
mod tests;
