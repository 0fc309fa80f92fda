//! Services to nftables: weft's replacement for kube-proxy.
//!
//! [`compile`] turns the cluster's Services and EndpointSlices (the model
//! types of `weft_model::service`) and one node ([`ProxyNode`]) into that
//! node's table `inet weft-proxy` ([`Ruleset`]): ClusterIP, external and
//! load-balancer IPs, NodePorts, `ClientIP` session affinity, external and
//! internal traffic policies, hairpin, and an immediate reject for Services
//! without endpoints. [`render_full`] and [`render_delta`] turn rulesets
//! into `nft -f` transactions; a change of one endpoint renders as set and
//! map elements plus the one chain that picks among the endpoints, which
//! [`delta_batch`] also encodes as one netlink transaction (no `nft`).
//!
//! Everything here is pure: the agent decides when to apply what.

mod compile;
pub mod nft;

pub use compile::{MASQUERADE_MARK, ProxyNode, compile};
pub use nft::{BaseChain, Ruleset, TABLE, delta_batch, render_delta, render_full};
