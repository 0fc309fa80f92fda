//! Connectivity probes and the pods' echo server: real TCP and UDP
//! connections between network namespaces.
//!
//! The lab runs [`serve`] in every pod (`weftctl lab serve --ports
//! tcp/80,udp/80`) and [`probe`] / [`probe_many`] from wherever a test wants
//! to know "can A reach B". The NetworkPolicy and Service suites judge
//! weft by these answers, so a probe never guesses:
//!
//! - a pass is a real round trip: the prober sends a random nonce and only
//!   counts the connection when the echo server sends that nonce back;
//! - a block is a refusal, an unreachable route or silence until the
//!   timeout; a probe that could not even start (namespace, socket) says so
//!   in [`ProbeResult::inconclusive`] instead of posing as a block;
//! - SCTP on a kernel without SCTP sockets is [`ProbeResult::unsupported`],
//!   never a block.
//!
//! The echo server answers `<request>\n<peer as the server sees it>\n`, so a
//! Service test can also check source-address preservation or masquerade
//! ([`ProbeResult::peer_seen`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use weft_probe::{ProbeOpts, ProbeRecord, Protocol, Target, parse_port_spec, probe_many};
//!
//! // In the pod (`weftctl lab serve --ports tcp/80,udp/80`):
//! // weft_probe::serve(&weft_probe::ServeOpts::new(parse_port_spec("tcp/80,udp/80")?))?;
//!
//! // From the lab:
//! let target = Target {
//!     netns: Some("/run/netns/weftlab-a".into()),
//!     address: "10.244.1.5".parse()?,
//!     port: 80,
//!     protocol: Protocol::Tcp,
//! };
//! let opts = ProbeOpts { timeout: Duration::from_secs(1) };
//! for result in probe_many(std::slice::from_ref(&target), &opts, 32) {
//!     println!("{}", ProbeRecord::new("x/a", "y/b", &target, &result).to_json_line());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod pool;
mod prober;
mod protocol;
mod record;
mod server;
mod socket;
mod wire;

pub use error::{Error, Result};
pub use prober::{ProbeOpts, ProbeResult, Target, probe, probe_many};
pub use protocol::{parse_port_spec, parse_protocol, protocol_name};
pub use record::ProbeRecord;
pub use server::{ServeOpts, Server, serve};
pub use weft_model::Protocol;
