//! `lab probe`: every chosen pod to every chosen pod (itself included),
//! in parallel, from inside the client pod's namespace.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use weft_model::Protocol;
use weft_probe::{ProbeOpts, ProbeRecord, Target};

use crate::error::{LabError, Result};
use crate::netns;
use crate::report::table;
use crate::state::{LabState, PodRecord};

/// Probes in flight at once.
pub const PARALLELISM: usize = 64;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeQuery {
    /// Client pods (`ns/name`); empty means all.
    pub from: Vec<String>,
    /// Server pods; empty means all.
    pub to: Vec<String>,
    /// Destination port.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Address families to probe; empty means every family of the lab.
    pub families: Vec<u8>,
    /// Per-probe budget.
    pub timeout: Duration,
}

fn select<'a>(state: &'a LabState, keys: &[String]) -> Result<Vec<&'a PodRecord>> {
    if keys.is_empty() {
        return Ok(state.pods.iter().collect());
    }
    keys.iter().map(|k| state.pod(k)).collect()
}

/// One cell of a probe matrix: a client, a server and the server's
/// address of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell<'a> {
    /// The client pod.
    pub from: &'a PodRecord,
    /// The server pod.
    pub to: &'a PodRecord,
    /// 4 or 6.
    pub family: u8,
    /// The server's address of that family.
    pub address: IpAddr,
}

/// The cells `q` asks for, one per (family, from, to) in that order: what
/// [`probe`] probes and what the policy harness predicts, so both cover
/// exactly the same cells. A server without an address of a family is
/// left out when the query names no family, and an error when it does.
pub fn cells<'a>(state: &'a LabState, q: &ProbeQuery) -> Result<Vec<Cell<'a>>> {
    let from = select(state, &q.from)?;
    let to = select(state, &q.to)?;
    let families = if q.families.is_empty() {
        state.families.clone()
    } else {
        q.families.clone()
    };
    let mut out = Vec::new();
    for family in families {
        for client in &from {
            for server in &to {
                let Some(address) = server.address(family) else {
                    if q.families.is_empty() {
                        continue;
                    }
                    return Err(LabError::Invalid(format!(
                        "pod {} has no IPv{family} address",
                        server.key()
                    )));
                };
                out.push(Cell {
                    from: client,
                    to: server,
                    family,
                    address,
                });
            }
        }
    }
    Ok(out)
}

/// Runs the probes; one record per (family, from, to), in that order.
pub fn probe(state: &LabState, q: &ProbeQuery) -> Result<Vec<ProbeRecord>> {
    let cells = cells(state, q)?;
    let targets: Vec<Target> = cells
        .iter()
        .map(|c| Target {
            netns: Some(netns::path(&c.from.netns)),
            address: c.address,
            port: q.port,
            protocol: q.protocol,
        })
        .collect();
    let results = weft_probe::probe_many(&targets, &ProbeOpts { timeout: q.timeout }, PARALLELISM);
    Ok(cells
        .iter()
        .zip(&targets)
        .zip(&results)
        .map(|((c, target), result)| ProbeRecord::new(c.from.key(), c.to.key(), target, result))
        .collect())
}

/// `{"results":[…]}`, as `lab probe --json` prints it.
pub fn to_json(records: &[ProbeRecord]) -> serde_json::Value {
    json!({ "results": records })
}

/// A reachability matrix per family: rows are clients, columns servers,
/// `.` connected, `X` not, `?` unsupported.
pub fn render(records: &[ProbeRecord]) -> String {
    let mut out = String::new();
    for family in [4u8, 6] {
        let recs: Vec<&ProbeRecord> = records
            .iter()
            .filter(|r| {
                (r.address.is_ipv4() && family == 4) || (r.address.is_ipv6() && family == 6)
            })
            .collect();
        let Some(first) = recs.first() else { continue };
        let mut froms: Vec<&str> = Vec::new();
        let mut tos: Vec<&str> = Vec::new();
        for r in &recs {
            if !froms.contains(&r.from.as_str()) {
                froms.push(&r.from);
            }
            if !tos.contains(&r.to.as_str()) {
                tos.push(&r.to);
            }
        }
        let _ = writeln!(
            out,
            "IPv{family} {}/{}  (. connected, X not, ? cannot probe)",
            weft_probe::protocol_name(first.protocol),
            first.port
        );
        let mut rows: Vec<Vec<String>> = vec![
            std::iter::once("FROM\\TO".to_string())
                .chain(tos.iter().map(|t| t.to_string()))
                .collect(),
        ];
        for f in &froms {
            let mut row = vec![f.to_string()];
            for t in &tos {
                let mark =
                    recs.iter()
                        .find(|r| r.from == *f && r.to == *t)
                        .map_or("-", |r| match (r.unsupported, r.connected) {
                            (true, _) => "?",
                            (false, true) => ".",
                            (false, false) => "X",
                        });
                row.push(mark.to_string());
            }
            rows.push(row);
        }
        table(&mut out, &rows);
        let ok = recs.iter().filter(|r| r.connected).count();
        let _ = writeln!(out, "{ok}/{} connected\n", recs.len());
    }
    out
}
