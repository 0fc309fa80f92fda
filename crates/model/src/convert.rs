//! Conversions from `k8s-openapi` types into the model.
//!
//! Every malformed value becomes an [`Error::Field`] naming the object and
//! the field: objects come from the API server or from hand-written files,
//! and neither may crash the agent.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::error::Error;
use crate::labels::Labels;
use crate::objects::{ContainerPort, Namespace, Node, Pod, PodPhase, Protocol};
use crate::selector::exact;

/// Namespace of a namespaced object whose manifest leaves it out.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

impl TryFrom<&core::Node> for Node {
    type Error = Error;

    fn try_from(node: &core::Node) -> Result<Self, Error> {
        const KIND: &str = "Node";
        let name = name_of(&node.metadata, KIND)?;
        let field = |field: String, reason: String| Error::Field {
            kind: KIND,
            object: name.clone(),
            field,
            reason,
        };

        let spec = node.spec.as_ref();
        let cidrs: Vec<(String, &String)> = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
            Some(list) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("spec.podCIDRs[{i}]"), c))
                .collect(),
            _ => spec
                .and_then(|s| s.pod_cidr.as_ref())
                .map(|c| vec![("spec.podCIDR".to_owned(), c)])
                .unwrap_or_default(),
        };
        let pod_cidrs = cidrs
            .into_iter()
            .map(|(path, text)| parse_cidr(text).map_err(|reason| field(path, reason)))
            .collect::<Result<_, _>>()
            .map(exact)?;

        // InternalIP first: that is the address peers tunnel to.
        let mut internal = Vec::new();
        let mut external = Vec::new();
        let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
        for (i, addr) in addresses.into_iter().flatten().enumerate() {
            let bucket = match addr.type_.as_str() {
                "InternalIP" => &mut internal,
                "ExternalIP" => &mut external,
                _ => continue, // Hostname, InternalDNS, ExternalDNS: not IPs.
            };
            let ip = addr.address.parse::<IpAddr>().map_err(|e| {
                field(
                    format!("status.addresses[{i}].address"),
                    format!("{:?}: {e}", addr.address),
                )
            })?;
            bucket.push(ip);
        }
        internal.append(&mut external);

        Ok(Self {
            name: name.clone(),
            labels: map_of(&node.metadata.labels),
            pod_cidrs,
            addresses: exact(internal),
            annotations: map_of(&node.metadata.annotations),
        })
    }
}

impl TryFrom<&core::Namespace> for Namespace {
    type Error = Error;

    fn try_from(ns: &core::Namespace) -> Result<Self, Error> {
        Ok(Self {
            name: name_of(&ns.metadata, "Namespace")?,
            labels: labels_of(&ns.metadata.labels),
        })
    }
}

impl TryFrom<&core::Pod> for Pod {
    type Error = Error;

    fn try_from(pod: &core::Pod) -> Result<Self, Error> {
        const KIND: &str = "Pod";
        let name = name_of(&pod.metadata, KIND)?;
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        let object = format!("{namespace}/{name}");
        let field = |field: String, reason: String| Error::Field {
            kind: KIND,
            object: object.clone(),
            field,
            reason,
        };

        let status = pod.status.as_ref();
        let ip_texts: Vec<(String, &String)> = match status.and_then(|s| s.pod_ips.as_ref()) {
            Some(list) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("status.podIPs[{i}].ip"), &p.ip))
                .collect(),
            _ => status
                .and_then(|s| s.pod_ip.as_ref())
                .map(|ip| vec![("status.podIP".to_owned(), ip)])
                .unwrap_or_default(),
        };
        let ips = ip_texts
            .into_iter()
            .map(|(path, text)| {
                text.parse::<IpAddr>()
                    .map_err(|e| field(path, format!("{text:?}: {e}")))
            })
            .collect::<Result<_, _>>()
            .map(exact)?;

        let spec = pod.spec.as_ref();
        let mut ports = Vec::new();
        let containers = spec
            .map(|s| {
                let init = s.init_containers.iter().flatten();
                let init = init.map(|c| ("spec.initContainers", c));
                let main = s.containers.iter().map(|c| ("spec.containers", c));
                main.chain(init).collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for (list, container) in containers {
            for (j, port) in container.ports.iter().flatten().enumerate() {
                let path = |leaf: &str| format!("{list}[{}].ports[{j}].{leaf}", container.name);
                ports.push(convert_port(port).map_err(|(leaf, reason)| field(path(leaf), reason))?);
            }
        }

        let phase = status
            .and_then(|s| s.phase.as_deref())
            .map_or(PodPhase::Unknown, PodPhase::parse);
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");

        Ok(Self {
            namespace,
            name,
            labels: labels_of(&pod.metadata.labels),
            node_name: spec.and_then(|s| s.node_name.clone()),
            ips,
            ports: exact(ports),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            phase,
            ready,
        })
    }
}

/// Converts one container port; the error names the offending leaf field.
fn convert_port(port: &core::ContainerPort) -> Result<ContainerPort, (&'static str, String)> {
    let number = u16::try_from(port.container_port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or((
            "containerPort",
            format!("{} is not in 1-65535", port.container_port),
        ))?;
    let protocol = match port.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(text) => Protocol::parse(text)
            .ok_or(("protocol", format!("{text:?} is not TCP, UDP or SCTP")))?,
    };
    Ok(ContainerPort {
        name: port.name.clone(),
        port: number,
        protocol,
    })
}

/// Parses a CIDR, refusing host bits (Kubernetes stores network addresses).
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if net.trunc() != net {
        return Err(format!("{text:?}: host bits set"));
    }
    Ok(net)
}

pub(crate) fn name_of(meta: &ObjectMeta, kind: &'static str) -> Result<String, Error> {
    match meta.name.as_deref() {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err(Error::MissingName { kind }),
    }
}

/// Decodes a raw manifest document (as kept in `Object::Other`) as the
/// Kubernetes type of `kind`.
pub(crate) fn decode_raw<T: serde::de::DeserializeOwned>(
    raw: &serde_json::Value,
    kind: &str,
) -> Result<T, Error> {
    serde_json::from_value(raw.clone()).map_err(|source| Error::Decode {
        index: 0,
        kind: kind.to_owned(),
        name: raw
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("<unnamed>")
            .to_owned(),
        source,
    })
}

fn map_of(map: &Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.clone().unwrap_or_default()
}

/// Labels of a namespace or pod, interned ([`Labels`]): the agent keeps
/// one per object of the cluster.
fn labels_of(map: &Option<BTreeMap<String, String>>) -> Labels {
    map.iter().flatten().collect()
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
