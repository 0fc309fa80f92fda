//! The node agent's reconcilers: desired kernel state from the model, diffed
//! against the kernel and applied.
//!
//! Decide, then apply. [`desired`] is a pure function from the cluster view,
//! the configuration and a few local facts to the whole state this node
//! should have ([`Desired`]): the VXLAN device and its addresses, routes to
//! other nodes' pod CIDRs, permanent neighbours and FDB entries, the
//! masquerade table, sysctls, the pod MTU and the annotations to publish.
//! [`reconcile`] observes the kernel through the [`Kernel`] seam, diffs and
//! applies only the difference, so it is level-triggered, idempotent and
//! hitless on restart: an agent that starts over a configured node adopts
//! the device and entries it finds and changes nothing.
//!
//! weft's objects, and the only ones it ever removes: routes with
//! [`ROUTE_PROTOCOL`], the VXLAN device and the entries on it, and nftables
//! tables `inet weft` (masquerade), `inet weft-policy` (NetworkPolicy,
//! applied by [`reconcile_policy`] as deltas against what it last loaded)
//! and `inet weft-proxy` (Services, applied the same way by
//! [`reconcile_services`]).
//!
//! ```no_run
//! use weft_agent::{AgentConfig, ClusterView, NetlinkKernel, desired, observe_local, reconcile};
//!
//! # fn main() -> Result<(), weft_agent::Error> {
//! let cfg = AgentConfig::new("node-1");
//! let view = ClusterView::default(); // from the datastore's snapshot
//! let mut kernel = NetlinkKernel::new()?; // in the node's namespace
//! let me = view.nodes.iter().find(|n| n.name == cfg.node_name).unwrap();
//! let local = observe_local(&mut kernel, me)?;
//! let want = desired(&view, &cfg, &local);
//! let report = reconcile(&mut kernel, &want)?;
//! println!("{} changes; pod MTU {}", report.changes(), want.pod_mtu);
//! # Ok(()) }
//! ```

mod config;
mod desired;
mod error;
pub mod fake;
mod kernel;
mod local;
pub mod nft;
pub mod policy;
mod real;
mod reconcile;
pub mod service;
pub mod stamped;
mod sweep;

pub use config::{
    ANNOTATION_BACKEND, ANNOTATION_VTEP_IP, ANNOTATION_VTEP_MAC, AgentConfig, Backend, ClusterView,
    DEFAULT_VXLAN_DEV, DEFAULT_VXLAN_PORT, LocalFacts, ROUTE_PROTOCOL, VXLAN_OVERHEAD_V4,
    VXLAN_OVERHEAD_V6,
};
pub use desired::{
    Desired, DesiredFdb, DesiredNeighbour, DesiredRoute, Masquerade, RouteDev, desired, first_host,
    vtep_mac,
};
pub use error::{Error, Result};
pub use kernel::{Kernel, LinkState};
pub use local::observe_local;
pub use policy::{PolicyAction, PolicyReport, PolicyState, reconcile_policy};
pub use real::NetlinkKernel;
pub use reconcile::{Report, reconcile};
pub use service::{ServiceReport, ServiceState, UdpFlush, reconcile_services};
pub use stamped::TableAction;
pub use sweep::sweep;

#[cfg(test)]
mod testutil;
