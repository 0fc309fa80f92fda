//! NetworkPolicy semantics for weft.
//!
//! [`evaluate`] is the reference evaluator: a pure function over the model
//! ([`PolicyView`]) that says whether a packet may pass and which policies,
//! rules, peers and ports decided it. It is the specification in code: the
//! nftables compiler is tested against it (differential tests in the lab),
//! and `weftctl policy explain` prints its [`Verdict`]. It favours being
//! obviously right over being fast; the datapath is where speed lives.
//!
//! [`compile`] turns the same model, plus one node's attached pods
//! ([`NodeInputs`]), into that node's nftables table ([`nft::Ruleset`]),
//! rendered whole or as a delta by [`nft`].
//!
//! The model types of NetworkPolicy, and their conversion and validation
//! from Kubernetes objects, live in `weft_model::policy`.

mod compile;
mod evaluate;
pub mod matrix;
pub mod nft;
mod view;

pub use compile::{Compiler, HOST_IF_PATTERN, LocalPod, NodeInputs, compile};
pub use evaluate::{DirectionVerdict, RuleRef, Verdict, evaluate};
pub use matrix::{Mismatch, Reachability};
pub use view::{Endpoint, IpFamily, NAMESPACE_NAME_LABEL, Packet, PolicyView};
