//! `networking.k8s.io/v1` NetworkPolicy as plain model values.
//!
//! The shape follows the API closely, so that `weftctl policy explain` can
//! point at `spec.ingress[i].from[j]` and a reader recognises it; what the API
//! leaves implicit is made explicit here:
//!
//! - `policyTypes` is always resolved ([`PolicyTypes`]), with the API's
//!   defaulting applied (`SetDefaults_NetworkPolicy` in
//!   `pkg/apis/networking/v1/defaults.go`).
//! - An absent and an empty `from`/`to`/`ports` list mean the same thing in
//!   the API ("If this field is empty or missing, this rule matches all
//!   sources / all ports", `NetworkPolicyIngressRule` field docs), so both
//!   become an empty `Vec` here, documented as "all".
//! - An absent `ingress`/`egress` list and an empty one also mean the same:
//!   no rule, so a selected pod is isolated with nothing allowed ("If this
//!   field is empty then this NetworkPolicy does not allow any traffic",
//!   `NetworkPolicySpec.ingress`). The difference that does matter, absent vs.
//!   `[]` vs. `[{}]`, is that `[{}]` holds one rule that matches everything.
//! - `port` + `endPort` become one [`PortMatch`].
//!
//! Conversion and validation live in `policy_convert.rs`.

use ipnet::IpNet;

use crate::objects::Protocol;
use crate::selector::LabelSelector;

/// A validated NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// `metadata.namespace` (`default` when absent, as in a manifest).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.podSelector`: the pods of [`Self::namespace`] the policy applies
    /// to. Absent in the API means empty, which selects every pod of the
    /// namespace.
    pub pod_selector: LabelSelector,
    /// The directions the policy isolates, after the API's defaulting.
    pub policy_types: PolicyTypes,
    /// `spec.ingress`: what selected pods accept. Only in force when
    /// [`PolicyTypes::ingress`] is set.
    pub ingress: Vec<PolicyRule>,
    /// `spec.egress`: what selected pods may send. Only in force when
    /// [`PolicyTypes::egress`] is set.
    pub egress: Vec<PolicyRule>,
}

/// The directions a policy applies to (`spec.policyTypes`, resolved).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyTypes {
    /// The policy isolates selected pods for ingress.
    pub ingress: bool,
    /// The policy isolates selected pods for egress.
    pub egress: bool,
}

/// A traffic direction, seen from the pod a policy selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Traffic into the selected pod (`spec.ingress`, peers in `from`).
    Ingress,
    /// Traffic out of the selected pod (`spec.egress`, peers in `to`).
    Egress,
}

/// One ingress or egress rule.
///
/// Traffic matches the rule when it matches one of the peers (or `peers` is
/// empty) and one of the ports (or `ports` is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRule {
    /// `from` (ingress) or `to` (egress), combined with OR. Empty: every peer,
    /// cluster-internal or not.
    pub peers: Vec<Peer>,
    /// `ports`, combined with OR. Empty: every port and protocol.
    pub ports: Vec<PolicyPort>,
}

/// One entry of `from`/`to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `podSelector` and/or `namespaceSelector` (at least one is set).
    ///
    /// - only `pod_selector`: matching pods in the policy's own namespace;
    /// - only `namespace_selector`: every pod of the matching namespaces;
    /// - both: matching pods in matching namespaces (AND, one peer).
    ///
    /// An empty selector matches everything of its kind.
    Selector {
        /// `namespaceSelector`; `None` means "the policy's namespace".
        namespace_selector: Option<LabelSelector>,
        /// `podSelector`; `None` means "every pod".
        pod_selector: Option<LabelSelector>,
    },
    /// `ipBlock`: addresses, whoever holds them.
    IpBlock(IpBlock),
}

/// `ipBlock`: a CIDR minus exceptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpBlock {
    /// `cidr`, as a network (host bits cleared).
    pub cidr: IpNet,
    /// `except`: strict subnets of `cidr`, same family, host bits cleared.
    pub except: Vec<IpNet>,
}

/// One entry of `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPort {
    /// `protocol`, TCP when absent.
    pub protocol: Protocol,
    /// `port` (+ `endPort`); `None` matches every port of the protocol.
    pub port: Option<PortMatch>,
}

/// `port` with its optional `endPort`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// A numeric port or an inclusive range (`first == last` without
    /// `endPort`).
    Range {
        /// `port`.
        first: u16,
        /// `endPort`, or `port` when absent.
        last: u16,
    },
    /// A named port, resolved against the destination pod's container ports
    /// (name and protocol must both match).
    Named(String),
}

impl NetworkPolicy {
    /// `namespace/name`, the policy's identity in the cluster.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the policy isolates its selected pods in `direction`.
    pub fn applies_to(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.policy_types.ingress,
            Direction::Egress => self.policy_types.egress,
        }
    }

    /// The rules of `direction` (whether or not the policy applies to it).
    pub fn rules(&self, direction: Direction) -> &[PolicyRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

impl Direction {
    /// The field holding the rules of this direction (`ingress`, `egress`).
    pub fn rules_field(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }

    /// The field holding a rule's peers (`from`, `to`).
    pub fn peers_field(self) -> &'static str {
        match self {
            Self::Ingress => "from",
            Self::Egress => "to",
        }
    }
}

impl IpBlock {
    /// Whether `addr` is inside `cidr` and outside every `except`.
    pub fn contains(&self, addr: &std::net::IpAddr) -> bool {
        self.cidr.contains(addr) && !self.except.iter().any(|e| e.contains(addr))
    }
}

impl PortMatch {
    /// Whether `port` is inside a numeric range; a named port never matches
    /// here (it needs the destination pod, see [`Self::matches_named`]).
    pub fn matches_number(&self, port: u16) -> bool {
        matches!(self, Self::Range { first, last } if (*first..=*last).contains(&port))
    }

    /// Whether a named port resolves to `port` among `container_ports` for
    /// `protocol`.
    pub fn matches_named(
        &self,
        protocol: Protocol,
        port: u16,
        container_ports: &[crate::objects::ContainerPort],
    ) -> bool {
        let Self::Named(name) = self else {
            return false;
        };
        container_ports.iter().any(|cp| {
            cp.name.as_deref() == Some(name.as_str()) && cp.protocol == protocol && cp.port == port
        })
    }
}

impl std::fmt::Display for PortMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Range { first, last } if first == last => write!(f, "{first}"),
            Self::Range { first, last } => write!(f, "{first}-{last}"),
            Self::Named(name) => f.write_str(name),
        }
    }
}
