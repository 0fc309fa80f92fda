//! The cluster as weft sees it.
//!
//! Kubernetes types (`k8s-openapi`) stop at this crate's edge: [`convert`]
//! turns them into the plain model objects of [`objects`], validating on the
//! way, and [`manifest`] reads YAML or JSON manifests into [`Object`]s. The
//! rest of weft only ever sees the model.

pub mod convert;
pub mod error;
pub mod labels;
pub mod manifest;
pub mod objects;
pub mod policy;
mod policy_convert;
pub mod selector;
pub mod service;
mod service_convert;

pub use error::{Error, SelectorError};
pub use labels::{Labels, Str, intern};
pub use manifest::{Object, parse_manifests};
pub use objects::{ContainerPort, Namespace, Node, Pod, PodPhase, Protocol};
pub use policy::{
    Direction, IpBlock, NetworkPolicy, Peer, PolicyPort, PolicyRule, PolicyTypes, PortMatch,
};
pub use selector::{LabelSelector, Operator, Requirement};
pub use service::{
    AddressType, Endpoint, EndpointConditions, EndpointPort, EndpointSlice, IpFamily, Service,
    ServicePort, ServiceType, SessionAffinity, TargetPort, TrafficPolicy,
};
