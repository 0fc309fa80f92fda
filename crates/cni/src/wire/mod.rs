//! CNI wire types: what runtimes send and receive. Kept apart from the
//! plugin's logic so every accepted and rejected input is testable alone.

pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod version;
