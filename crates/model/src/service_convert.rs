//! Service and EndpointSlice from `k8s-openapi`, validated as the API
//! server validates what the proxy depends on (`ValidateService`,
//! `ValidateEndpointSlice` upstream), defaulted as `SetDefaults_Service`
//! does. An invalid object is rejected as a whole with an [`Error::Field`]
//! naming it and the field; each object converts on its own, so a bad one
//! never disturbs the others.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::convert::{DEFAULT_NAMESPACE, decode_raw, name_of};
use crate::error::Error;
use crate::objects::Protocol;
use crate::policy_convert::{Invalid, validate_port_name};
use crate::service::{
    AddressType, DEFAULT_AFFINITY_TIMEOUT_SECONDS, Endpoint, EndpointConditions, EndpointPort,
    EndpointSlice, IpFamily, MAX_AFFINITY_TIMEOUT_SECONDS, SERVICE_NAME_LABEL, Service,
    ServicePort, ServiceType, SessionAffinity, TargetPort, TrafficPolicy,
};

/// Upstream's limit of addresses per endpoint (only the first is used).
const MAX_ENDPOINT_ADDRESSES: usize = 100;

impl TryFrom<&core::Service> for Service {
    type Error = Error;

    fn try_from(svc: &core::Service) -> Result<Self, Error> {
        const KIND: &str = "Service";
        let name = name_of(&svc.metadata, KIND)?;
        let namespace = namespace_of(&svc.metadata.namespace);
        convert_service(svc, namespace.clone(), name.clone()).map_err(|(field, reason)| {
            Error::Field {
                kind: KIND,
                object: format!("{namespace}/{name}"),
                field,
                reason,
            }
        })
    }
}

impl TryFrom<&discovery::EndpointSlice> for EndpointSlice {
    type Error = Error;

    fn try_from(slice: &discovery::EndpointSlice) -> Result<Self, Error> {
        const KIND: &str = "EndpointSlice";
        let name = name_of(&slice.metadata, KIND)?;
        let namespace = namespace_of(&slice.metadata.namespace);
        convert_slice(slice, namespace.clone(), name.clone()).map_err(|(field, reason)| {
            Error::Field {
                kind: KIND,
                object: format!("{namespace}/{name}"),
                field,
                reason,
            }
        })
    }
}

impl Service {
    /// Decodes and converts a raw manifest document (as kept in
    /// `Object::Other`) that is a `v1` Service.
    pub fn from_value(raw: &serde_json::Value) -> Result<Self, Error> {
        let svc: core::Service = decode_raw(raw, "Service")?;
        Self::try_from(&svc)
    }
}

impl EndpointSlice {
    /// Decodes and converts a raw manifest document (as kept in
    /// `Object::Other`) that is a `discovery.k8s.io/v1` EndpointSlice.
    pub fn from_value(raw: &serde_json::Value) -> Result<Self, Error> {
        let slice: discovery::EndpointSlice = decode_raw(raw, "EndpointSlice")?;
        Self::try_from(&slice)
    }
}

fn convert_service(
    svc: &core::Service,
    namespace: String,
    name: String,
) -> Result<Service, Invalid> {
    let spec = svc.spec.clone().unwrap_or_default();
    let service_type = match spec.type_.as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => return Err(invalid("spec.type", format!("unknown type {other:?}"))),
    };

    let (cluster_ips, headless) = cluster_ips(&spec, service_type)?;
    let ip_families = ip_families(spec.ip_families.as_deref(), &cluster_ips)?;
    let external_ips = parse_ips(spec.external_ips.iter().flatten(), "spec.externalIPs")?;
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let mut load_balancer_ips = Vec::new();
    for (i, entry) in ingress.into_iter().flatten().enumerate() {
        if let Some(text) = &entry.ip {
            let path = format!("status.loadBalancer.ingress[{i}].ip");
            load_balancer_ips.push(parse_ip(text, &path)?);
        }
    }

    let raw_ports = spec.ports.as_deref().unwrap_or_default();
    if raw_ports.is_empty() && service_type != ServiceType::ExternalName && !headless {
        return Err(invalid("spec.ports", "must have at least one port".into()));
    }
    let mut ports = Vec::with_capacity(raw_ports.len());
    let mut names = BTreeSet::new();
    for (i, raw) in raw_ports.iter().enumerate() {
        let port = convert_service_port(raw, &format!("spec.ports[{i}]"))?;
        if raw_ports.len() > 1 && port.name.is_none() {
            return Err(invalid(
                &format!("spec.ports[{i}].name"),
                "required when the Service has several ports".into(),
            ));
        }
        if !names.insert(port.name.clone()) {
            return Err(invalid(
                &format!("spec.ports[{i}].name"),
                "duplicate".into(),
            ));
        }
        if port.node_port.is_some()
            && !matches!(
                service_type,
                ServiceType::NodePort | ServiceType::LoadBalancer
            )
        {
            return Err(invalid(
                &format!("spec.ports[{i}].nodePort"),
                "only NodePort and LoadBalancer Services have node ports".into(),
            ));
        }
        ports.push(port);
    }

    let session_affinity = match spec.session_affinity.as_deref() {
        None | Some("None") => SessionAffinity::None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            let timeout_seconds = match timeout {
                None => DEFAULT_AFFINITY_TIMEOUT_SECONDS,
                Some(t) => u32::try_from(t)
                    .ok()
                    .filter(|t| (1..=MAX_AFFINITY_TIMEOUT_SECONDS).contains(t))
                    .ok_or_else(|| {
                        invalid(
                            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                            format!("{t} is not in 1-{MAX_AFFINITY_TIMEOUT_SECONDS}"),
                        )
                    })?,
            };
            SessionAffinity::ClientIp { timeout_seconds }
        }
        Some(other) => {
            return Err(invalid(
                "spec.sessionAffinity",
                format!("{other:?} is not None or ClientIP"),
            ));
        }
    };

    Ok(Service {
        namespace,
        name,
        service_type,
        cluster_ips,
        ip_families,
        external_ips,
        load_balancer_ips,
        ports,
        session_affinity,
        external_traffic_policy: traffic_policy(
            spec.external_traffic_policy.as_deref(),
            "spec.externalTrafficPolicy",
        )?,
        internal_traffic_policy: traffic_policy(
            spec.internal_traffic_policy.as_deref(),
            "spec.internalTrafficPolicy",
        )?,
        headless,
        external_name: spec
            .external_name
            .filter(|_| service_type == ServiceType::ExternalName),
    })
}

/// The cluster IPs and whether the Service is headless. `clusterIPs` wins
/// over the legacy `clusterIP`, which must then equal its first entry.
fn cluster_ips(
    spec: &core::ServiceSpec,
    service_type: ServiceType,
) -> Result<(Vec<IpAddr>, bool), Invalid> {
    if service_type == ServiceType::ExternalName {
        return Ok((Vec::new(), false));
    }
    let list: Vec<(String, &String)> = match &spec.cluster_ips {
        Some(list) if !list.is_empty() => {
            if let Some(single) = &spec.cluster_ip {
                if single != &list[0] {
                    return Err(invalid(
                        "spec.clusterIP",
                        format!("{single:?} differs from spec.clusterIPs[0] {:?}", list[0]),
                    ));
                }
            }
            list.iter()
                .enumerate()
                .map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip))
                .collect()
        }
        _ => spec
            .cluster_ip
            .iter()
            .map(|ip| ("spec.clusterIP".to_owned(), ip))
            .collect(),
    };
    if list.iter().any(|(_, ip)| ip.as_str() == "None") {
        if list.len() > 1 {
            return Err(invalid(
                "spec.clusterIPs",
                "None must be the only entry".into(),
            ));
        }
        return Ok((Vec::new(), true));
    }
    // An empty string is "not allocated yet" in a hand-written manifest.
    let mut ips = Vec::new();
    for (path, text) in list.into_iter().filter(|(_, t)| !t.is_empty()) {
        ips.push(parse_ip(text, &path)?);
    }
    if ips.len() > 2 || (ips.len() == 2 && IpFamily::of(ips[0]) == IpFamily::of(ips[1])) {
        return Err(invalid(
            "spec.clusterIPs",
            "at most one address per family".into(),
        ));
    }
    Ok((ips, false))
}

/// `ipFamilies`, checked against the cluster IPs (same order), or derived
/// from them.
fn ip_families(raw: Option<&[String]>, cluster_ips: &[IpAddr]) -> Result<Vec<IpFamily>, Invalid> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(cluster_ips.iter().map(|ip| IpFamily::of(*ip)).collect());
    };
    let mut families = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        let family = match text.as_str() {
            "IPv4" => IpFamily::V4,
            "IPv6" => IpFamily::V6,
            other => {
                return Err(invalid(
                    &format!("spec.ipFamilies[{i}]"),
                    format!("{other:?} is not IPv4 or IPv6"),
                ));
            }
        };
        if families.contains(&family) {
            return Err(invalid(
                &format!("spec.ipFamilies[{i}]"),
                "duplicate".into(),
            ));
        }
        if let Some(ip) = cluster_ips.get(i) {
            if IpFamily::of(*ip) != family {
                return Err(invalid(
                    &format!("spec.ipFamilies[{i}]"),
                    format!("{text} does not match spec.clusterIPs[{i}] {ip}"),
                ));
            }
        }
        families.push(family);
    }
    Ok(families)
}

fn convert_service_port(raw: &core::ServicePort, path: &str) -> Result<ServicePort, Invalid> {
    if let Some(name) = &raw.name {
        validate_port_name(name).map_err(|r| invalid(&format!("{path}.name"), r.to_owned()))?;
    }
    let port = port_number(raw.port, &format!("{path}.port"))?;
    let target_port = match &raw.target_port {
        None => TargetPort::Number(port),
        Some(IntOrString::Int(n)) => {
            TargetPort::Number(port_number(*n, &format!("{path}.targetPort"))?)
        }
        Some(IntOrString::String(name)) => {
            // A numeric string is a number, as the API server reads it.
            match name.parse::<i32>() {
                Ok(n) => TargetPort::Number(port_number(n, &format!("{path}.targetPort"))?),
                Err(_) => {
                    validate_port_name(name)
                        .map_err(|r| invalid(&format!("{path}.targetPort"), r.to_owned()))?;
                    TargetPort::Named(name.clone())
                }
            }
        }
    };
    let node_port = match raw.node_port {
        None | Some(0) => None,
        Some(n) => Some(port_number(n, &format!("{path}.nodePort"))?),
    };
    Ok(ServicePort {
        name: raw.name.clone().filter(|n| !n.is_empty()),
        protocol: protocol(raw.protocol.as_deref(), &format!("{path}.protocol"))?,
        port,
        target_port,
        node_port,
    })
}

fn traffic_policy(raw: Option<&str>, path: &str) -> Result<TrafficPolicy, Invalid> {
    match raw {
        None | Some("Cluster") => Ok(TrafficPolicy::Cluster),
        Some("Local") => Ok(TrafficPolicy::Local),
        Some(other) => Err(invalid(path, format!("{other:?} is not Cluster or Local"))),
    }
}

fn convert_slice(
    slice: &discovery::EndpointSlice,
    namespace: String,
    name: String,
) -> Result<EndpointSlice, Invalid> {
    let address_type = match slice.address_type.as_str() {
        "IPv4" => AddressType::Ipv4,
        "IPv6" => AddressType::Ipv6,
        "FQDN" => AddressType::Fqdn,
        other => {
            return Err(invalid(
                "addressType",
                format!("{other:?} is not IPv4, IPv6 or FQDN"),
            ));
        }
    };
    let mut endpoints = Vec::new();
    for (i, raw) in slice.endpoints.iter().flatten().enumerate() {
        let path = format!("endpoints[{i}].addresses");
        if raw.addresses.is_empty() || raw.addresses.len() > MAX_ENDPOINT_ADDRESSES {
            return Err(invalid(
                &path,
                format!("must hold 1-{MAX_ENDPOINT_ADDRESSES} addresses"),
            ));
        }
        let addresses = match address_type {
            AddressType::Fqdn => Vec::new(),
            AddressType::Ipv4 | AddressType::Ipv6 => {
                let ips = parse_ips(raw.addresses.iter(), &path)?;
                let want = if address_type == AddressType::Ipv4 {
                    IpFamily::V4
                } else {
                    IpFamily::V6
                };
                if let Some(ip) = ips.iter().find(|ip| IpFamily::of(**ip) != want) {
                    return Err(invalid(
                        &path,
                        format!("{ip} does not match addressType {}", slice.address_type),
                    ));
                }
                ips
            }
        };
        let conditions = raw.conditions.clone().unwrap_or_default();
        // Unset means "unknown", which consumers read as ready; serving
        // defaults to ready (EndpointConditions API documentation).
        let ready = conditions.ready.unwrap_or(true);
        endpoints.push(Endpoint {
            addresses,
            conditions: EndpointConditions {
                ready,
                serving: conditions.serving.unwrap_or(ready),
                terminating: conditions.terminating.unwrap_or(false),
            },
            node_name: raw.node_name.clone(),
            zone: raw.zone.clone(),
        });
    }
    let mut ports = Vec::new();
    let mut names = BTreeSet::new();
    for (i, raw) in slice.ports.iter().flatten().enumerate() {
        let path = format!("ports[{i}]");
        let name = raw.name.clone().filter(|n| !n.is_empty());
        if let Some(name) = &name {
            validate_port_name(name).map_err(|r| invalid(&format!("{path}.name"), r.to_owned()))?;
        }
        if !names.insert(name.clone()) {
            return Err(invalid(&format!("{path}.name"), "duplicate".into()));
        }
        ports.push(EndpointPort {
            name,
            protocol: protocol(raw.protocol.as_deref(), &format!("{path}.protocol"))?,
            port: raw
                .port
                .map(|p| port_number(p, &format!("{path}.port")))
                .transpose()?,
        });
    }
    Ok(EndpointSlice {
        namespace,
        name,
        service: slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .cloned(),
        address_type,
        endpoints,
        ports,
    })
}

fn namespace_of(namespace: &Option<String>) -> String {
    namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
}

fn protocol(raw: Option<&str>, path: &str) -> Result<Protocol, Invalid> {
    match raw {
        None => Ok(Protocol::Tcp),
        Some(text) => Protocol::parse(text)
            .ok_or_else(|| invalid(path, format!("{text:?} is not TCP, UDP or SCTP"))),
    }
}

fn port_number(n: i32, path: &str) -> Result<u16, Invalid> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid(path, format!("{n} is not in 1-65535")))
}

fn parse_ips<'a>(
    texts: impl Iterator<Item = &'a String>,
    path: &str,
) -> Result<Vec<IpAddr>, Invalid> {
    texts
        .enumerate()
        .map(|(i, text)| parse_ip(text, &format!("{path}[{i}]")))
        .collect()
}

fn parse_ip(text: &str, path: &str) -> Result<IpAddr, Invalid> {
    text.parse()
        .map_err(|e| invalid(path, format!("{text:?}: {e}")))
}

fn invalid(path: &str, reason: String) -> Invalid {
    (path.to_owned(), reason)
}

#[cfg(test)]
#[path = "service_convert_tests.rs"]
mod tests;
