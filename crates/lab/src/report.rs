//! `lab status` and `lab sync`: what the lab looks like now, and waiting
//! for every agent to catch up with the datastore.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Serialize;

use crate::error::{LabError, Result};
use crate::layout::Layout;
use crate::procs;
use crate::services::{self, ServiceStatus};
use crate::state::{ExternalRecord, LabState, SegmentRecord};
use crate::store::{Revision, Store};

/// How long a real API server's objects must stay unchanged before `lab
/// sync` takes them as the cluster's state: longer than its controllers
/// take to follow a write (tens of milliseconds here).
pub const KUBE_SETTLE: Duration = Duration::from_millis(300);

/// The whole lab as `lab status --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The state directory.
    pub state_dir: String,
    /// The namespace prefix.
    pub prefix: String,
    /// weftd's backend.
    pub backend: String,
    /// Pod address families.
    pub families: Vec<u8>,
    /// Whether weftd runs on the nodes.
    pub agent: bool,
    /// Where the cluster lives: `file` or `kube`.
    pub datastore: String,
    /// Where the cluster stands: the file datastore's revision, or the
    /// digest of the API server's watched objects.
    pub revision: Revision,
    /// Underlay segments, in order.
    pub segments: Vec<SegmentRecord>,
    /// The router namespace joining the segments, when there are several.
    pub router: Option<String>,
    /// Nodes.
    pub nodes: Vec<NodeStatus>,
    /// Pods.
    pub pods: Vec<PodStatus>,
    /// The external client (not a node), when the lab has one.
    pub external: Option<ExternalRecord>,
    /// Services with their cluster IPs, NodePorts and ready endpoints.
    pub services: Vec<ServiceStatus>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Its underlay segment (index into [`Status::segments`]).
    pub segment: usize,
    /// Underlay addresses.
    pub addresses: Vec<IpNet>,
    /// Pod CIDRs.
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<IpNet>,
    /// weftd's PID, when one was started.
    pub weftd_pid: Option<i32>,
    /// Whether that weftd still runs.
    pub weftd_alive: bool,
    /// What this node's agent reports having applied (same kind of token
    /// as [`Status::revision`]).
    pub applied_revision: Option<Revision>,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Its node.
    pub node: String,
    /// Its network namespace.
    pub netns: String,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
    /// The echo server's PID.
    pub server_pid: Option<i32>,
    /// Whether the echo server still runs.
    pub server_alive: bool,
}

/// Collects the status of the lab in `layout`.
pub fn status(layout: &Layout) -> Result<Status> {
    let state = LabState::require(layout)?;
    let store = Store::open(layout)?;
    let nodes = state
        .nodes
        .iter()
        .map(|n| {
            Ok(NodeStatus {
                name: n.name.clone(),
                netns: n.netns.clone(),
                segment: n.segment,
                addresses: n.addresses.clone(),
                pod_cidrs: n.pod_cidrs.clone(),
                weftd_pid: n.weftd.map(|p| p.pid),
                weftd_alive: n.weftd.is_some_and(|p| procs::alive(&p)),
                applied_revision: store.applied_revision(&n.name)?,
            })
        })
        .collect::<Result<_>>()?;
    let pods = state
        .pods
        .iter()
        .map(|p| PodStatus {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            node: p.node.clone(),
            netns: p.netns.clone(),
            ips: p.ips.clone(),
            server_pid: p.server.map(|s| s.pid),
            server_alive: p.server.is_some_and(|s| procs::alive(&s)),
        })
        .collect();
    Ok(Status {
        state_dir: layout.root().display().to_string(),
        prefix: state.prefix.clone(),
        backend: state.backend.clone(),
        families: state.families.clone(),
        agent: state.agent,
        datastore: state.datastore.clone(),
        revision: store.revision()?,
        segments: state.segments.clone(),
        router: state.router.clone(),
        nodes,
        pods,
        external: state.external.clone(),
        services: services::status(&store)?,
    })
}

/// The human-readable tables of `lab status`.
pub fn render(s: &Status) -> String {
    let join = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lab {} (prefix {}, backend {}, agent {}, datastore {}, {})\n",
        s.state_dir,
        s.prefix,
        s.backend,
        if s.agent { "weftd" } else { "none" },
        s.datastore,
        s.revision
    );
    let mut rows = vec![header(&[
        "NODE",
        "NETNS",
        "SEGMENT",
        "ADDRESSES",
        "POD CIDRS",
        "WEFTD",
        "APPLIED",
    ])];
    for n in &s.nodes {
        rows.push(vec![
            n.name.clone(),
            n.netns.clone(),
            n.segment.to_string(),
            join(
                &n.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            ),
            join(
                &n.pod_cidrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            ),
            match n.weftd_pid {
                Some(pid) => format!("{pid} ({})", if n.weftd_alive { "running" } else { "dead" }),
                None => "-".into(),
            },
            n.applied_revision
                .as_ref()
                .map_or("-".into(), Revision::token),
        ]);
    }
    table(&mut out, &rows);
    out.push('\n');
    let mut rows = vec![header(&["POD", "NODE", "NETNS", "IPS", "SERVER"])];
    for p in &s.pods {
        rows.push(vec![
            format!("{}/{}", p.namespace, p.name),
            p.node.clone(),
            p.netns.clone(),
            join(&p.ips.iter().map(ToString::to_string).collect::<Vec<_>>()),
            match p.server_pid {
                Some(pid) => format!(
                    "{pid} ({})",
                    if p.server_alive { "running" } else { "dead" }
                ),
                None => "-".into(),
            },
        ]);
    }
    table(&mut out, &rows);
    if !s.services.is_empty() {
        out.push('\n');
        let mut rows = vec![header(&[
            "SERVICE",
            "TYPE",
            "CLUSTER IPS",
            "PORTS",
            "ENDPOINTS",
        ])];
        for svc in &s.services {
            let ips: Vec<String> = svc.cluster_ips.iter().map(ToString::to_string).collect();
            rows.push(vec![
                format!("{}/{}", svc.namespace, svc.name),
                svc.service_type.clone(),
                join(&ips),
                join(&svc.ports),
                svc.endpoints.len().to_string(),
            ]);
        }
        table(&mut out, &rows);
    }
    out
}

fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Appends `rows` as left-aligned columns.
pub fn table(out: &mut String, rows: &[Vec<String>]) {
    let mut widths = vec![0usize; rows.iter().map(Vec::len).max().unwrap_or(0)];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}", w = *w))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

/// Waits until the agent of every node in the cluster reports having
/// applied where the cluster stands now ([`Store::revision`]: a file
/// revision at least as new, or in kube mode the same digest); returns
/// that. A lab node whose Node object was deleted is not part of the
/// cluster: its agent cannot apply anything, so it is not waited for.
///
/// On a real API server the controllers write after the lab does (the
/// EndpointSlices of a new Pod or Service): the cluster counts as settled
/// only once its digest has not moved for [`KUBE_SETTLE`].
pub fn sync(layout: &Layout, timeout: Duration) -> Result<Revision> {
    let state = LabState::require(layout)?;
    if !state.agent {
        return Err(LabError::Invalid(
            "the lab runs without agents (--no-agent): nothing reports a revision".into(),
        ));
    }
    let store = Store::open(layout)?;
    let (settle, poll) = match store.is_kube() {
        true => (KUBE_SETTLE, Duration::from_millis(50)),
        false => (Duration::ZERO, Duration::from_millis(25)),
    };
    let deadline = Instant::now() + timeout;
    let mut seen: Option<(Revision, Instant)> = None;
    loop {
        let want = store.revision()?;
        let since = match &seen {
            Some((rev, at)) if *rev == want => *at,
            _ => Instant::now(),
        };
        seen = Some((want.clone(), since));
        let mut behind = Vec::new();
        for n in &state.nodes {
            if store.get("Node", None, &n.name)?.is_none() {
                continue;
            }
            let have = store.applied_revision(&n.name)?;
            if !have.as_ref().is_some_and(|h| h.reached(&want)) {
                behind.push(format!(
                    "{} at {}",
                    n.name,
                    have.map_or("nothing".into(), |h| h.to_string())
                ));
            }
        }
        // An agent writes to the cluster (its annotations) before it
        // reports what it read: unchanged means nobody is behind a write
        // made while we looked.
        if behind.is_empty() && since.elapsed() >= settle && store.revision()? == want {
            return Ok(want);
        }
        if Instant::now() >= deadline {
            let why = if behind.is_empty() {
                "it kept changing".to_string()
            } else {
                behind.join(", ")
            };
            return Err(LabError::Timeout(format!(
                "lab sync: the cluster at {want} after {timeout:?}, but {why}"
            )));
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut out = String::new();
        table(&mut out, &[header(&["A", "BB"]), header(&["ccc", "d"])]);
        assert_eq!(out, "A    BB\nccc  d\n");
    }
}
