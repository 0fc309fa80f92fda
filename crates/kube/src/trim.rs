//! Trimming objects before they are stored: the mirror keeps only what the
//! model conversions (crates/model `convert.rs`, `policy_convert.rs`,
//! `service_convert.rs`) read, plus the identity and version the digest
//! needs. With 5,000 Pods, managed fields, container specs and status noise
//! would otherwise dominate weftd's memory.
//!
//! Each function runs in the watcher's `modify` hook, so an untrimmed object
//! is never stored. A field added to a conversion must be kept here too; the
//! tests convert full objects both ways to catch that.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `kubectl apply`'s copy of the whole last applied object: never read, and
/// as large as the object itself.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Keeps identity, version, labels and (for the kinds whose model carries
/// them) annotations; drops managed fields, owner references, finalizers
/// and the rest.
fn trim_meta(meta: &mut ObjectMeta, keep_annotations: bool) {
    let mut annotations = if keep_annotations {
        meta.annotations.take()
    } else {
        None
    };
    if let Some(map) = &mut annotations {
        map.remove(LAST_APPLIED);
    }
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        labels: meta.labels.take(),
        annotations: annotations.filter(|a| !a.is_empty()),
        ..ObjectMeta::default()
    };
}

/// Node: pod CIDRs and addresses; annotations (peers' backend data).
pub(crate) fn node(node: &mut core::Node) {
    trim_meta(&mut node.metadata, true);
    node.spec = node.spec.take().map(|spec| core::NodeSpec {
        pod_cidr: spec.pod_cidr,
        pod_cidrs: spec.pod_cidrs,
        ..core::NodeSpec::default()
    });
    node.status = node.status.take().map(|status| core::NodeStatus {
        addresses: status.addresses,
        ..core::NodeStatus::default()
    });
}

/// Namespace: name and labels (namespace selectors).
pub(crate) fn namespace(ns: &mut core::Namespace) {
    trim_meta(&mut ns.metadata, false);
    ns.spec = None;
    ns.status = None;
}

/// Pod: node, host network, container ports, IPs, phase and readiness.
pub(crate) fn pod(pod: &mut core::Pod) {
    trim_meta(&mut pod.metadata, false);
    pod.spec = pod.spec.take().map(|spec| core::PodSpec {
        node_name: spec.node_name,
        host_network: spec.host_network,
        containers: spec.containers.into_iter().map(container).collect(),
        init_containers: spec
            .init_containers
            .map(|list| list.into_iter().map(container).collect()),
        ..core::PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| core::PodStatus {
        phase: status.phase,
        pod_ip: status.pod_ip,
        pod_ips: status.pod_ips,
        // Only the Ready condition is read, and only its status: the
        // timestamps and messages change without changing anything here.
        conditions: status.conditions.map(|list| {
            list.into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| core::PodCondition {
                    type_: c.type_,
                    status: c.status,
                    ..core::PodCondition::default()
                })
                .collect()
        }),
        ..core::PodStatus::default()
    });
}

/// A container reduced to its name and its ports' names, numbers and
/// protocols (named ports for policies).
fn container(c: core::Container) -> core::Container {
    core::Container {
        name: c.name,
        ports: c.ports.map(|ports| {
            ports
                .into_iter()
                .map(|p| core::ContainerPort {
                    name: p.name,
                    container_port: p.container_port,
                    protocol: p.protocol,
                    ..core::ContainerPort::default()
                })
                .collect()
        }),
        ..core::Container::default()
    }
}

/// NetworkPolicy: the whole spec is semantics.
pub(crate) fn network_policy(policy: &mut networking::NetworkPolicy) {
    trim_meta(&mut policy.metadata, false);
}

/// Service: the spec minus the pod selector (endpoints come from slices),
/// and the load balancer's ingress addresses.
pub(crate) fn service(svc: &mut core::Service) {
    trim_meta(&mut svc.metadata, false);
    if let Some(spec) = &mut svc.spec {
        spec.selector = None;
    }
    svc.status = svc.status.take().map(|status| core::ServiceStatus {
        load_balancer: status.load_balancer,
        conditions: None,
    });
}

/// EndpointSlice: addresses, conditions, node and zone of each endpoint,
/// the ports, and the `kubernetes.io/service-name` label.
pub(crate) fn endpoint_slice(slice: &mut discovery::EndpointSlice) {
    trim_meta(&mut slice.metadata, false);
    for endpoint in slice.endpoints.iter_mut().flatten() {
        *endpoint = discovery::Endpoint {
            addresses: std::mem::take(&mut endpoint.addresses),
            conditions: endpoint.conditions.take(),
            node_name: endpoint.node_name.take(),
            zone: endpoint.zone.take(),
            ..discovery::Endpoint::default()
        };
    }
}

#[cfg(test)]
#[path = "trim_tests.rs"]
mod tests;
