//! The lab: a multi-node weft cluster in network namespaces on one machine.
//!
//! `weftctl lab up` builds an underlay (a bridge inside its own namespace),
//! N node namespaces each running a real `weftd`, and pods attached by
//! invoking the real `weft` plugin chain exactly as a container runtime
//! does, each with an echo server. `lab probe` checks who reaches whom;
//! `lab down` removes everything.
//!
//! Safety: everything happens inside namespaces the lab creates, named
//! with its prefix (`weftlab-…`, or `weftlab<hash>-…` for a lab with its
//! own state directory). The root namespace is never changed; every
//! namespace and process is recorded in `lab.json` before it is created,
//! so `lab down` removes them also after a crash, and a failed `lab up`
//! removes what it built.
//!
//! The modules follow the lab's roles: [`underlay`] and [`cluster`] build
//! and remove it, [`kubelet`] starts and stops pods through [`chain`] (the
//! libcni part), [`store`] writes the datastore as the API server's clients
//! would, [`report`] and [`probe`] look at the result, [`netpol`] sets the
//! NetworkPolicy evaluator against it (`policy explain`, the differential
//! harness), [`services`] plays the API server and EndpointSlice
//! controller for Services, [`control_plane`] runs a real one instead
//! (`--datastore kube`, with [`certs`] its PKI), [`cli`] is the
//! command-line contract weftctl exposes.

pub mod agents;
pub mod certs;
pub mod chain;
pub mod cli;
pub mod cluster;
pub mod control_plane;
pub mod error;
pub mod kubelet;
pub mod layout;
pub mod model;
pub mod netns;
pub mod netpol;
pub mod objects;
pub mod probe;
pub mod probe_services;
pub mod procs;
pub mod report;
pub mod services;
pub mod state;
pub mod store;
pub mod underlay;

pub use cli::{ApplyArgs, LabArgs, LabCmd, LabelArgs, run_apply, run_delete, run_lab, run_label};
pub use error::{LabError, Result};
pub use layout::Layout;
pub use netpol::{PolicyArgs, run_policy};
pub use state::LabState;
