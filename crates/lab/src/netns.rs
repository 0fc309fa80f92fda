//! Network namespaces by name, and running programs inside them.
//!
//! Namespaces are created and removed with `ip netns` (the bind mount under
//! /run/netns that CNI_NETNS names); configuration inside them goes through
//! `ip -n <name>`, which enters the namespace for that one call; programs are
//! spawned from a short-lived thread that entered the namespace (setns is
//! per thread), so the lab's own threads never leave the root namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use weft_netlink::{Netns, NetnsGuard};

use crate::error::{LabError, Result};

/// Where `ip netns` keeps its bind mounts.
pub const NETNS_DIR: &str = "/run/netns";

/// The namespace file of `name`, as passed in `CNI_NETNS`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether the namespace `name` exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Creates namespace `name` (which must start with `weft`) with its
/// loopback up.
pub fn create(name: &str) -> Result<()> {
    if !name.starts_with("weft") {
        return Err(LabError::Invalid(format!(
            "refusing to create namespace {name:?}: weft namespaces start with \"weft\""
        )));
    }
    run(
        Command::new("ip").args(["netns", "add", name]),
        &format!("create netns {name}"),
    )?;
    ip_in(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Removes namespace `name`; one that is already gone is not an error.
pub fn delete(name: &str) -> Result<()> {
    if !exists(name) {
        return Ok(());
    }
    run(
        Command::new("ip").args(["netns", "del", name]),
        &format!("delete netns {name}"),
    )?;
    Ok(())
}

/// Namespaces present on the machine whose names satisfy `keep`.
pub fn list(keep: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(format!("list {NETNS_DIR}"))(e)),
    };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| keep(n))
        .collect();
    out.sort();
    Ok(out)
}

/// Runs `ip -n <netns> args..` and returns its stdout.
pub fn ip_in(netns: &str, args: &[&str]) -> Result<String> {
    let out = run(
        Command::new("ip").arg("-n").arg(netns).args(args),
        &format!("ip -n {netns} {}", args.join(" ")),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The PIDs of processes inside namespace `name`.
pub fn pids(name: &str) -> Result<Vec<i32>> {
    let out = run(
        Command::new("ip").args(["netns", "pids", name]),
        &format!("list processes in netns {name}"),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Spawns `cmd` inside namespace `netns`: from a fresh thread that enters
/// the namespace, so the child starts there and nothing else moves.
pub fn spawn_in(netns: &str, cmd: &mut Command) -> Result<Child> {
    let what = format!("spawn {:?} in netns {netns}", cmd.get_program());
    run_in(netns, &what, || {
        cmd.spawn().map_err(LabError::io(what.clone()))
    })
}

/// Runs `f` on a fresh thread inside namespace `netns` (sockets it opens
/// live there); `what` names the operation in errors.
pub fn run_in<T: Send>(netns: &str, what: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let ns = Netns::open(&path(netns)).map_err(LabError::netlink(what))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            let guard = NetnsGuard::enter(&ns).map_err(LabError::netlink(what))?;
            let out = f();
            guard.exit().map_err(LabError::netlink(what))?;
            out
        })
        .join()
        .map_err(|_| LabError::failed(what, "the thread inside the namespace panicked"))?
    })
}

/// Runs `cmd` to completion; a non-zero exit is an error carrying stderr.
pub fn run(cmd: &mut Command, op: &str) -> Result<Output> {
    let out = cmd.output().map_err(LabError::io(op))?;
    if !out.status.success() {
        return Err(LabError::failed(
            op,
            format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(out)
}
