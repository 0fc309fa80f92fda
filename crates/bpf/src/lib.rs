//! weft's BPF datapath. Programs are assembled in Rust ([`asm`]) and loaded
//! with the `bpf(2)` system call ([`sys`]); no compiler toolchain, object
//! files or pinned maps are involved. [`fastpath`] is the pod fast path the
//! agent attaches to tc ingress hooks.

pub mod asm;
pub mod fastpath;
pub mod sys;

pub use fastpath::{Error, FastPath, LocalPod, Remote, VxlanEncap};
