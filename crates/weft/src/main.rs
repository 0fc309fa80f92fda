//! `weft`: the CNI plugin. Runtimes call it with CNI environment variables and
//! the network configuration on stdin; it prints the result or error JSON.
//!
//! The C runtime calls `main` directly (`no_main`): a runtime starts the
//! plugin for every pod, and Rust's own start-up adds nothing the plugin
//! uses — it reads `/proc/self/maps` to place a stack guard, installs a
//! SIGSEGV handler with its alternate stack, and ignores SIGPIPE — at
//! ~40–50 µs per exec here (`perf stat` of VERSION: 0.65 → 0.61 ms wall).
//! What that leaves out is harmless for a one-shot process: a stack
//! overflow is a plain SIGSEGV instead of a message, and a runtime that
//! closed our stdout before reading it ends us by SIGPIPE (it has stopped
//! waiting for the answer anyway). Arguments are unused (CNI passes
//! everything in the environment), and `run` flushes stdout itself.

// The test harness brings its own `main`.
#![cfg_attr(not(test), no_main)]

/// The process entry point, called by the C runtime.
#[cfg(not(test))]
#[allow(unsafe_code)]
// SAFETY: the only `main` symbol in the binary (`no_main` removes Rust's);
// the signature is the C one the C runtime calls, and the arguments are
// not touched.
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    weft_cni::plugin::run()
}
