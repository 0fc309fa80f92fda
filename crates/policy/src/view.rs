//! What the evaluator looks at: the cluster ([`PolicyView`]) and a packet.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use weft_model::{Labels, Namespace, NetworkPolicy, Node, Pod, PodPhase, Protocol};

/// The label the API server puts on every namespace, holding its name
/// (immutable; `NamespaceDefaultLabelName`, GA since Kubernetes 1.22).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The part of the cluster NetworkPolicy depends on, as model values.
#[derive(Clone, Debug, Default)]
pub struct PolicyView {
    /// Namespaces, for `namespaceSelector`. A namespace missing here still
    /// carries [`NAMESPACE_NAME_LABEL`].
    pub namespaces: Vec<Namespace>,
    /// Pods: labels for selectors, IPs for `ipBlock` and address lookup,
    /// container ports for named ports, node for the local-node exception.
    pub pods: Vec<Pod>,
    /// Validated policies (invalid ones were rejected at conversion).
    pub policies: Vec<NetworkPolicy>,
    /// Nodes, whose addresses are "the pod's local node" for ingress.
    pub nodes: Vec<Node>,
}

/// One end of a packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// A pod by identity.
    Pod {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
    },
    /// An address: the pod holding it if there is one (it is then treated
    /// as that pod), otherwise something outside the pod network.
    Ip(IpAddr),
}

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A packet opening a connection (the evaluator is stateless: replies of
/// allowed connections pass in the datapath through connection tracking and
/// are not the evaluator's question).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// The sender.
    pub src: Endpoint,
    /// The receiver.
    pub dst: Endpoint,
    /// The transport protocol.
    pub protocol: Protocol,
    /// The destination port.
    pub port: u16,
    /// The address family. `None`: the family of an [`Endpoint::Ip`] end if
    /// there is one, else the destination pod's primary family (the family
    /// of its first IP, i.e. of `status.podIP`), else the source pod's.
    pub family: Option<IpFamily>,
}

/// A packet end resolved against the view.
#[derive(Clone, Debug)]
pub(crate) struct Party<'a> {
    /// The pod, when the end is (or holds the address of) a pod. An unknown
    /// pod name resolves to a pod of that namespace without labels, ports
    /// or addresses.
    pub pod: Option<Cow<'a, Pod>>,
    /// The address the packet carries for this end, if known.
    pub addr: Option<IpAddr>,
}

impl PolicyView {
    /// The pod `namespace/name`, if the view has it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    /// The pod that holds `addr` on the pod network.
    ///
    /// Host-network pods are left out (their address is their node's, shared
    /// by every host-network pod there), and so are terminated pods (their
    /// address may already be reused by a new pod).
    pub fn pod_by_ip(&self, addr: IpAddr) -> Option<&Pod> {
        self.pods.iter().find(|p| {
            !p.host_network
                && !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed)
                && p.ips.contains(&addr)
        })
    }

    /// A namespace's labels, [`NAMESPACE_NAME_LABEL`] included even when
    /// the source of the model left it out.
    pub fn namespace_labels(&self, namespace: &str) -> Labels {
        self.namespaces
            .iter()
            .find(|n| n.name == namespace)
            .map(|n| &n.labels)
            .unwrap_or(&Labels::new())
            .with(NAMESPACE_NAME_LABEL, namespace)
    }

    /// Whether `addr` belongs to the node the pod runs on.
    pub fn is_local_node_address(&self, pod: &Pod, addr: IpAddr) -> bool {
        pod.node_name.as_deref().is_some_and(|node| {
            self.nodes
                .iter()
                .any(|n| n.name == node && n.addresses.contains(&addr))
        })
    }

    /// Resolves both ends of a packet, with addresses of its family.
    pub(crate) fn resolve(&self, packet: &Packet) -> (Party<'_>, Party<'_>) {
        let pod_of = |end: &Endpoint| -> Option<Cow<'_, Pod>> {
            match end {
                Endpoint::Pod { namespace, name } => Some(
                    self.pod(namespace, name)
                        .map(Cow::Borrowed)
                        .unwrap_or_else(|| Cow::Owned(unknown_pod(namespace, name))),
                ),
                Endpoint::Ip(addr) => self.pod_by_ip(*addr).map(Cow::Borrowed),
            }
        };
        let src_pod = pod_of(&packet.src);
        let dst_pod = pod_of(&packet.dst);
        let family = packet.family.or_else(|| {
            let ip_family = |end: &Endpoint| match end {
                Endpoint::Ip(addr) => Some(IpFamily::of(*addr)),
                Endpoint::Pod { .. } => None,
            };
            let primary = |pod: &Option<Cow<'_, Pod>>| {
                pod.as_ref()
                    .and_then(|p| p.ips.first())
                    .map(|a| IpFamily::of(*a))
            };
            ip_family(&packet.dst)
                .or_else(|| ip_family(&packet.src))
                .or_else(|| primary(&dst_pod))
                .or_else(|| primary(&src_pod))
        });
        let addr_of = |end: &Endpoint, pod: &Option<Cow<'_, Pod>>| match end {
            Endpoint::Ip(addr) => Some(*addr),
            Endpoint::Pod { .. } => pod.as_ref().and_then(|p| {
                p.ips
                    .iter()
                    .copied()
                    .find(|a| family.is_none_or(|f| IpFamily::of(*a) == f))
            }),
        };
        let src_addr = addr_of(&packet.src, &src_pod);
        let dst_addr = addr_of(&packet.dst, &dst_pod);
        (
            Party {
                pod: src_pod,
                addr: src_addr,
            },
            Party {
                pod: dst_pod,
                addr: dst_addr,
            },
        )
    }
}

/// A pod the view does not (yet) hold: in its namespace, with nothing else.
/// Namespace-wide policies select it, which is the safe reading for a pod
/// that is starting up.
pub(crate) fn unknown_pod(namespace: &str, name: &str) -> Pod {
    Pod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        labels: Labels::new(),
        node_name: None,
        ips: Vec::new(),
        ports: Vec::new(),
        host_network: false,
        phase: PodPhase::Unknown,
        ready: false,
    }
}

impl IpFamily {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
}

impl Packet {
    /// A packet whose family follows from its ends (see [`Packet::family`]).
    pub fn new(src: Endpoint, dst: Endpoint, protocol: Protocol, port: u16) -> Self {
        Self {
            src,
            dst,
            protocol,
            port,
            family: None,
        }
    }

    /// The same packet in an explicit family (for dual-stack pods).
    pub fn with_family(mut self, family: IpFamily) -> Self {
        self.family = Some(family);
        self
    }
}

impl Endpoint {
    /// The pod `namespace/name`.
    pub fn pod(namespace: &str, name: &str) -> Self {
        Self::Pod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pod { namespace, name } => write!(f, "{namespace}/{name}"),
            Self::Ip(addr) => write!(f, "{addr}"),
        }
    }
}
