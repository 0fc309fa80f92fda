//! Model objects: plain values, free of Kubernetes API types.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::labels::Labels;

/// A cluster node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.podCIDRs` (or the legacy single `spec.podCIDR`).
    pub pod_cidrs: Vec<IpNet>,
    /// IP addresses from `status.addresses`, `InternalIP` ones first, then
    /// `ExternalIP`; host names are left out.
    pub addresses: Vec<IpAddr>,
    /// `metadata.annotations`: where nodes publish what peers need of them.
    pub annotations: BTreeMap<String, String>,
}

/// A namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
}

/// A pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.namespace` (`default` when absent, as in a manifest).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
    /// `spec.nodeName`; `None` while unscheduled.
    pub node_name: Option<String>,
    /// `status.podIPs`, or `status.podIP` when only that is set.
    pub ips: Vec<IpAddr>,
    /// Declared ports of all containers (init containers included, for
    /// restartable sidecars), in declaration order.
    pub ports: Vec<ContainerPort>,
    /// `spec.hostNetwork`: the pod uses its node's network namespace.
    pub host_network: bool,
    /// `status.phase`.
    pub phase: PodPhase,
    /// The `Ready` condition is `True`.
    pub ready: bool,
}

/// A port a container declares.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerPort {
    /// The port's name, which NetworkPolicy and Service may refer to.
    pub name: Option<String>,
    /// The port number (1–65535).
    pub port: u16,
    /// The transport protocol.
    pub protocol: Protocol,
}

/// A transport protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP, the Kubernetes default.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// The pod's lifecycle phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PodPhase {
    /// Accepted, not all containers running yet.
    Pending,
    /// Bound to a node, at least one container running.
    Running,
    /// All containers terminated successfully.
    Succeeded,
    /// All containers terminated, at least one failed.
    Failed,
    /// Absent or not understood.
    #[default]
    Unknown,
}

impl Protocol {
    /// Parses the protocol as Kubernetes spells it (`TCP`, `UDP`, `SCTP`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }
}

impl PodPhase {
    /// Parses `status.phase`; anything else is `Unknown`.
    pub fn parse(text: &str) -> Self {
        match text {
            "Pending" => Self::Pending,
            "Running" => Self::Running,
            "Succeeded" => Self::Succeeded,
            "Failed" => Self::Failed,
            _ => Self::Unknown,
        }
    }
}

impl Pod {
    /// `namespace/name`, the pod's identity in the cluster.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
