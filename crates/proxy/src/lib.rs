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
//! The agent keeps a [`Compiler`] instead of calling [`compile`] each pass:
//! it recompiles only the Services whose inputs changed, patches its table
//! in place and hands out the [`Change`] from the previous table (which
//! [`change_batch`] and [`render_change`] encode without walking the whole
//! table) and the table's hash from per-Service hashes.
//!
//! Everything here is pure: the agent decides when to apply what.

mod compile;
pub mod nft;

pub use compile::{Compiler, MASQUERADE_MARK, ProxyNode, Update, compile};
pub use nft::{
    BaseChain, Change, Ruleset, TABLE, change_batch, delta_batch, render_change, render_delta,
    render_full,
};
