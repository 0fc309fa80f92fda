//! weft's benchmarks. Each one measures weft and a baseline in the same run
//! on the same machine and returns its figures as JSON, so that a ratio is
//! never taken across machines or days.
//!
//! Every benchmark that touches the kernel runs inside network namespaces it
//! creates (named `weft…`, see `weft-testkit`) and removes them afterwards,
//! also on failure and on SIGINT/SIGTERM/SIGHUP.

pub mod cni;
pub mod iperf;
pub mod kube_converge;
pub mod lab_up;
pub mod labs;
pub mod machine;
pub mod netpol_connect;
pub mod policy;
pub mod services;
pub mod stats;
pub mod supervise;
pub mod throughput;
