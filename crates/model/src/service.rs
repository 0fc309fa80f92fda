//! Services and EndpointSlices: what the service proxy load-balances.
//!
//! Plain values converted (and validated) from `core/v1` Service and
//! `discovery.k8s.io/v1` EndpointSlice by `service_convert`. Defaults the
//! API server would fill in are applied here, so a hand-written manifest
//! means the same as the object the API server would store.

use std::net::IpAddr;

use crate::objects::Protocol;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;
/// The largest affinity timeout the API server accepts (one day).
pub const MAX_AFFINITY_TIMEOUT_SECONDS: u32 = 86_400;

/// A Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// `metadata.namespace` (`default` when absent, as in a manifest).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.type` (`ClusterIP` when absent).
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (or the legacy single `spec.clusterIP`), primary
    /// family first; empty for headless and ExternalName Services.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.ipFamilies`, in the same order as `cluster_ips` (derived from
    /// them when the object leaves it out).
    pub ip_families: Vec<IpFamily>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` (hostname-only entries left out:
    /// there is no address to match).
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.sessionAffinity` with its timeout.
    pub session_affinity: SessionAffinity,
    /// `spec.externalTrafficPolicy` (`Cluster` when absent).
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.internalTrafficPolicy` (`Cluster` when absent).
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.clusterIP: None`: DNS-only, never proxied.
    pub headless: bool,
    /// `spec.externalName` of an ExternalName Service (a DNS CNAME, never
    /// proxied).
    pub external_name: Option<String>,
}

/// `spec.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ServiceType {
    /// A virtual IP inside the cluster.
    #[default]
    ClusterIp,
    /// ClusterIP plus a port on every node's addresses.
    NodePort,
    /// NodePort plus an external load balancer's ingress addresses.
    LoadBalancer,
    /// A DNS alias; nothing to proxy.
    ExternalName,
}

/// An IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `name`; required (and unique) when the Service has several ports.
    pub name: Option<String>,
    /// `protocol` (TCP when absent).
    pub protocol: Protocol,
    /// `port`: what clients connect to on the cluster IPs.
    pub port: u16,
    /// `targetPort` (the same number as `port` when absent).
    pub target_port: TargetPort,
    /// `nodePort`, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
}

/// Where a Service port's traffic goes on the endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A container port name, resolved per endpoint through the
    /// EndpointSlice's port of the same name as the Service port.
    Named(String),
}

/// `spec.sessionAffinity`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionAffinity {
    /// Every new connection picks an endpoint at random.
    #[default]
    None,
    /// A client address keeps its endpoint until it has been idle for
    /// `timeout_seconds`.
    ClientIp {
        /// `sessionAffinityConfig.clientIP.timeoutSeconds` (1–86400).
        timeout_seconds: u32,
    },
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster.
    #[default]
    Cluster,
    /// Only endpoints on the node the traffic arrives at.
    Local,
}

/// An EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSlice {
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The Service it belongs to (label `kubernetes.io/service-name`);
    /// `None` for a slice no Service owns, which the proxy ignores.
    pub service: Option<String>,
    /// `addressType`.
    pub address_type: AddressType,
    /// `endpoints`.
    pub endpoints: Vec<Endpoint>,
    /// `ports`; the same for every endpoint of the slice.
    pub ports: Vec<EndpointPort>,
}

/// `addressType` of an EndpointSlice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressType {
    /// IPv4 addresses.
    Ipv4,
    /// IPv6 addresses.
    Ipv6,
    /// Host names: not proxied (kube-proxy ignores them too), so their
    /// endpoints carry no addresses here.
    Fqdn,
}

/// One endpoint (a pod, usually) of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `addresses` (only the first is used for proxying, as upstream
    /// consumers do); empty for an FQDN slice.
    pub addresses: Vec<IpAddr>,
    /// `conditions`, with the API's defaults for unset fields.
    pub conditions: EndpointConditions,
    /// `nodeName`: the node the endpoint runs on, for `Local` policies.
    pub node_name: Option<String>,
    /// `zone`.
    pub zone: Option<String>,
}

/// `conditions` of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointConditions {
    /// Ready for new traffic (unset means ready).
    pub ready: bool,
    /// Able to serve, even while terminating (unset means `ready`).
    pub serving: bool,
    /// Being deleted (unset means not).
    pub terminating: bool,
}

/// One port of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPort {
    /// `name`: matches the Service port's name (empty for the only port of
    /// a single-port Service).
    pub name: Option<String>,
    /// `protocol` (TCP when absent).
    pub protocol: Protocol,
    /// `port`; `None` means "all ports", which a proxy cannot program.
    pub port: Option<u16>,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
}

impl Service {
    /// `namespace/name`, the Service's identity in the cluster.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the proxy has anything to program for it: not headless and
    /// not ExternalName.
    pub fn is_proxied(&self) -> bool {
        !self.headless && self.service_type != ServiceType::ExternalName
    }

    /// Whether its ports are open on the nodes' addresses.
    pub fn has_node_ports(&self) -> bool {
        matches!(
            self.service_type,
            ServiceType::NodePort | ServiceType::LoadBalancer
        )
    }
}

impl EndpointSlice {
    /// The family of its addresses, `None` for FQDN slices.
    pub fn family(&self) -> Option<IpFamily> {
        match self.address_type {
            AddressType::Ipv4 => Some(IpFamily::V4),
            AddressType::Ipv6 => Some(IpFamily::V6),
            AddressType::Fqdn => None,
        }
    }
}
