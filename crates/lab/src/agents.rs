//! weftd on the lab's nodes: starting every agent at `lab up`, restarting
//! one exactly as `up` started it (`lab agent restart`, the operator's way
//! to exercise a hitless restart, and the tests'), and asking an agent
//! whether it is ready.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::chain;
use crate::control_plane;
use crate::error::{LabError, Result};
use crate::layout::{Layout, NodePaths};
use crate::netns;
use crate::procs;
use crate::state::{LabLock, LabState, NodeRecord, ProcRecord};
use crate::store;
use crate::underlay;

/// Where weftd listens for health checks, inside each node's namespace
/// (every node has its own loopback, so one port serves all).
pub const HEALTH_ADDR: &str = "127.0.0.1:9099";

/// The file under a node's directory where weftd reports each pass in
/// kube mode (`--status-file`): the digest it applied.
pub const STATUS_FILE: &str = "status.json";

/// How long one health request may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// What [`restart`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRestart {
    /// The node.
    pub node: String,
    /// The agent that was stopped (`None` when none was running).
    pub stopped: Option<ProcRecord>,
    /// The agent started in its place.
    pub started: ProcRecord,
    /// The agent's log (shared by every agent the node has had).
    pub log: PathBuf,
    /// Where in [`AgentRestart::log`] the new agent's output begins.
    pub log_offset: u64,
    /// From the start of the new agent until it reported ready.
    pub ready_after: Duration,
}

/// An agent's answer on `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Its last reconcile pass succeeded and the node state is written.
    pub ready: bool,
    /// The answer's body, or why there was none (e.g. nothing listens).
    pub detail: String,
}

/// weftd's arguments for `node`, the same at `up` and at every restart:
/// the file source on the lab's datastore, or in kube mode the API server
/// with the node's ServiceAccount kubeconfig and its status file (what
/// `lab sync` reads there).
fn args(layout: &Layout, state: &LabState, node: &NodeRecord) -> Result<Vec<String>> {
    let paths = NodePaths::new(layout.node_dir(&node.name));
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let mut out: Vec<String> = vec!["--node-name".into(), node.name.clone()];
    if state.datastore == store::KUBE {
        let kubeconfig = control_plane::agent_kubeconfig(layout, state, &node.name)?;
        out.extend([
            "--source".into(),
            "kube".into(),
            "--kubeconfig".into(),
            path(&kubeconfig),
            "--status-file".into(),
            path(&paths.dir.join(STATUS_FILE)),
        ]);
    } else {
        out.extend([
            "--source".into(),
            "file".into(),
            "--datastore".into(),
            path(&layout.datastore()),
        ]);
    }
    out.extend([
        "--node-state-file".into(),
        path(&paths.node_state),
        // The agent's sweep of leaked addresses must look at the store
        // this node's plugin writes, not the system default.
        "--ipam-dir".into(),
        path(&paths.ipam),
        "--network".into(),
        chain::NETWORK_NAME.into(),
        "--backend".into(),
        state.backend.clone(),
        "--health-addr".into(),
        HEALTH_ADDR.into(),
    ]);
    // As a cluster's install sets it (deploy/weft.yaml's ConfigMap): the
    // whole pod range, so traffic to a node whose CIDR an agent has not
    // learned yet is still never masqueraded.
    let cluster: Vec<String> = underlay::cluster_cidrs(&state.families)
        .iter()
        .map(ToString::to_string)
        .collect();
    if !cluster.is_empty() {
        out.extend(["--cluster-cidrs".into(), cluster.join(",")]);
    }
    Ok(out)
}

/// Starts weftd on node `idx` and records it (saved before returning).
fn spawn(layout: &Layout, state: &mut LabState, idx: usize) -> Result<Child> {
    let node = state.nodes[idx].clone();
    let paths = NodePaths::new(layout.node_dir(&node.name));
    let weftd = state.bin_dir.join("weftd");
    let (child, rec) = procs::spawn_detached(
        &node.netns,
        &weftd,
        &args(layout, state, &node)?,
        &paths.weftd_log,
    )?;
    state.nodes[idx].weftd = Some(rec);
    state.nodes[idx].health_addr = Some(HEALTH_ADDR.to_string());
    state.save(layout)?;
    Ok(child)
}

/// Starts weftd on every node, then waits (up to `timeout` in all) for
/// each one's node-state file.
pub(crate) fn start_all(layout: &Layout, state: &mut LabState, timeout: Duration) -> Result<()> {
    let mut children = Vec::new();
    for idx in 0..state.nodes.len() {
        children.push((idx, spawn(layout, state, idx)?));
    }
    let deadline = Instant::now() + timeout;
    for (idx, mut child) in children {
        let node = &state.nodes[idx];
        let paths = NodePaths::new(layout.node_dir(&node.name));
        while !paths.node_state.exists() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let why = match exited {
                    Some(status) => format!("weftd exited ({status})"),
                    None => format!("weftd did not publish it within {timeout:?}"),
                };
                return Err(LabError::Timeout(format!(
                    "node {}: no node-state file {}: {why}; see {}:\n{}",
                    node.name,
                    paths.node_state.display(),
                    paths.weftd_log.display(),
                    procs::tail_file(&paths.weftd_log, 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Restarts node `name`'s weftd the way `lab up` started it: stops the
/// running one (SIGTERM with a grace period, or SIGKILL at once with
/// `kill`), starts a new one with the same arguments and log, and waits
/// up to `timeout` until it reports ready (its first reconcile pass
/// succeeded). The kernel state stays in place meanwhile: traffic must
/// not notice.
pub fn restart(layout: &Layout, name: &str, kill: bool, timeout: Duration) -> Result<AgentRestart> {
    let lock = LabLock::acquire(layout)?;
    let mut state = LabState::require(layout)?;
    if !state.agent {
        return Err(LabError::Invalid(
            "the lab runs without agents (--no-agent): nothing to restart".into(),
        ));
    }
    let idx = state
        .nodes
        .iter()
        .position(|n| n.name == name)
        .ok_or_else(|| LabError::Invalid(format!("no node {name:?} in the lab")))?;
    let stopped = state.nodes[idx].weftd.filter(procs::alive);
    if let Some(rec) = &stopped {
        if kill {
            procs::kill_now(rec)?;
        } else {
            procs::stop(rec, procs::STOP_GRACE)?;
        }
    }
    let log = NodePaths::new(layout.node_dir(name)).weftd_log;
    let log_offset = std::fs::metadata(&log).map_or(0, |m| m.len());
    let begun = Instant::now();
    let mut child = spawn(layout, &mut state, idx)?;
    drop(lock);
    let node = state.nodes[idx].clone();
    let started = node.weftd.expect("spawn records the agent");
    let fail = |why: String| {
        let text = std::fs::read(&log).unwrap_or_default();
        let since = String::from_utf8_lossy(&text[(log_offset as usize).min(text.len())..]);
        let tail: Vec<&str> = since.lines().rev().take(20).collect();
        LabError::Timeout(format!(
            "restart the agent of node {name}: {why}; see {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    };
    loop {
        let answer = readiness(&node)?;
        if answer.ready {
            return Ok(AgentRestart {
                node: name.to_string(),
                stopped,
                started,
                log,
                log_offset,
                ready_after: begun.elapsed(),
            });
        }
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(fail(format!("weftd exited ({status})")));
        }
        if begun.elapsed() >= timeout {
            return Err(fail(format!(
                "not ready within {timeout:?} ({})",
                answer.detail.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asks `node`'s agent on `/readyz`, from inside the node's namespace. An
/// agent that does not answer (not started yet, dead) is not ready; only
/// a node without an agent is an error.
pub fn readiness(node: &NodeRecord) -> Result<Readiness> {
    let what = format!("ask the agent of node {} whether it is ready", node.name);
    let addr: SocketAddr = node
        .health_addr
        .as_deref()
        .ok_or_else(|| LabError::Invalid(format!("node {} runs no agent", node.name)))?
        .parse()
        .map_err(|e| LabError::failed(&what, format!("bad health address: {e}")))?;
    netns::run_in(&node.netns, &what, || {
        Ok(match http_get(addr, "/readyz") {
            Ok((code, body)) => Readiness {
                ready: code == 200,
                detail: body,
            },
            Err(e) => Readiness {
                ready: false,
                detail: format!("no answer from {addr}: {e}"),
            },
        })
    })
}

/// A minimal HTTP/1.0 GET: status code and body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, HEALTH_TIMEOUT)?;
    stream.set_read_timeout(Some(HEALTH_TIMEOUT))?;
    stream.set_write_timeout(Some(HEALTH_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: weftd\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    parse_response(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP response: {text:?}"),
        )
    })
}

/// `HTTP/1.1 200 OK\r\n…\r\n\r\nbody` → (200, body).
fn parse_response(text: &str) -> Option<(u16, String)> {
    let code = text
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse() {
        assert_eq!(
            parse_response("HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\nnot ready: x\n"),
            Some((503, "not ready: x\n".into()))
        );
        assert_eq!(
            parse_response("HTTP/1.1 200 OK\r\n\r\n"),
            Some((200, String::new()))
        );
        assert_eq!(parse_response("garbage"), None);
    }
}
