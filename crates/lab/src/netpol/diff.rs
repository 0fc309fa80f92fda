//! The differential-test harness: the evaluator's prediction for exactly
//! the cells `lab probe` probes ([`predict`]), set against what the probes
//! found ([`compare`]).
//!
//! Pod-to-itself cells are compared like every other cell but reported
//! apart ([`Mismatches::self_cells`]): the evaluator subjects them to
//! policy, as upstream's truth tables do, while upstream's e2e suite then
//! ignores them (`ignoreLoopback`, kubernetes#95879), because a pod's
//! traffic to its own address may never leave its namespace for a datapath
//! to judge. A suite decides whether they count; [`Mismatches::is_clean`]
//! does not count them.

use std::fmt;
use std::net::IpAddr;

use weft_datastore::Snapshot;
use weft_model::Protocol;
use weft_policy::{Endpoint, IpFamily, Packet, evaluate};
use weft_probe::ProbeRecord;

use super::diff_report;
use crate::error::Result;
use crate::probe::{self, ProbeQuery};
use crate::state::{LabState, family_of};

/// The evaluator's verdict on one probe cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The client pod, `namespace/name`.
    pub from: String,
    /// The server pod, `namespace/name`.
    pub to: String,
    /// The server's address the probe uses.
    pub address: IpAddr,
    /// Destination port.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
    /// The evaluator allows the connection.
    pub allowed: bool,
}

/// A cell where the prediction and the probe disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellMismatch {
    /// The client pod.
    pub from: String,
    /// The server pod.
    pub to: String,
    /// 4 or 6.
    pub family: u8,
    /// Destination port.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
    /// What the evaluator says.
    pub predicted: bool,
    /// What the probe found.
    pub probed: bool,
}

/// The outcome of [`compare`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mismatches {
    /// Cells compared (both sides present, the probe conclusive).
    pub compared: usize,
    /// Disagreeing cells between two different pods.
    pub cells: Vec<CellMismatch>,
    /// Disagreeing pod-to-itself cells, reported apart (see the module
    /// docs).
    pub self_cells: Vec<CellMismatch>,
    /// Predicted cells without a probe record.
    pub unprobed: Vec<Expectation>,
    /// Probe records without a prediction.
    pub unpredicted: Vec<ProbeRecord>,
    /// Probes of a protocol this kernel cannot probe (neither pass nor
    /// block), left out of the comparison.
    pub unsupported: usize,
    /// The two truth tables side by side, mismatching cells marked.
    pub report: String,
}

impl Expectation {
    /// 4 or 6.
    pub fn family(&self) -> u8 {
        family_of(self.address)
    }

    /// A pod-to-itself cell.
    pub fn is_self(&self) -> bool {
        self.from == self.to
    }
}

impl Mismatches {
    /// Every probed cell between two different pods agrees with the
    /// prediction and both sides cover the same cells; pod-to-itself cells
    /// are not counted (see [`Self::self_cells`]).
    pub fn is_clean(&self) -> bool {
        self.cells.is_empty() && self.unprobed.is_empty() && self.unpredicted.is_empty()
    }
}

/// The evaluator's verdict for every cell [`probe::probe`] probes for
/// `query`, in the same order, against the model in `snapshot` (pods by
/// identity: their labels, ports and addresses as the datastore holds
/// them, in the cell's family).
///
/// Fails as [`probe::probe`] does, on a pod `query` names that the lab
/// does not hold.
pub fn predict(
    state: &LabState,
    snapshot: &Snapshot,
    query: &ProbeQuery,
) -> Result<Vec<Expectation>> {
    let view = super::policy_view(snapshot);
    let cells = probe::cells(state, query)?;
    Ok(cells
        .iter()
        .map(|c| {
            let family = if c.family == 4 {
                IpFamily::V4
            } else {
                IpFamily::V6
            };
            let packet = Packet::new(
                Endpoint::pod(&c.from.namespace, &c.from.name),
                Endpoint::pod(&c.to.namespace, &c.to.name),
                query.protocol,
                query.port,
            )
            .with_family(family);
            Expectation {
                from: c.from.key(),
                to: c.to.key(),
                address: c.address,
                port: query.port,
                protocol: query.protocol,
                allowed: evaluate(&view, &packet).allowed,
            }
        })
        .collect())
}

/// The identity of a cell on both sides.
type CellKey<'a> = (&'a str, &'a str, u8, u16, Protocol);

fn record_key(r: &ProbeRecord) -> CellKey<'_> {
    (&r.from, &r.to, family_of(r.address), r.port, r.protocol)
}

fn expectation_key(e: &Expectation) -> CellKey<'_> {
    (&e.from, &e.to, e.family(), e.port, e.protocol)
}

/// Sets the probe records against the prediction, cell by cell (cells are
/// matched by client, server, family, port and protocol, so order does not
/// matter).
pub fn compare(probed: &[ProbeRecord], predicted: &[Expectation]) -> Mismatches {
    let mut out = Mismatches::default();
    for e in predicted {
        let Some(r) = probed.iter().find(|r| record_key(r) == expectation_key(e)) else {
            out.unprobed.push(e.clone());
            continue;
        };
        if r.unsupported {
            out.unsupported += 1;
            continue;
        }
        out.compared += 1;
        if r.connected == e.allowed {
            continue;
        }
        let m = CellMismatch {
            from: e.from.clone(),
            to: e.to.clone(),
            family: e.family(),
            port: e.port,
            protocol: e.protocol,
            predicted: e.allowed,
            probed: r.connected,
        };
        if e.is_self() {
            out.self_cells.push(m);
        } else {
            out.cells.push(m);
        }
    }
    out.unpredicted = probed
        .iter()
        .filter(|r| {
            !predicted
                .iter()
                .any(|e| expectation_key(e) == record_key(r))
        })
        .cloned()
        .collect();
    out.report = diff_report::render(probed, predicted);
    out
}

impl fmt::Display for CellMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |allowed: bool| if allowed { "allowed" } else { "denied" };
        write!(
            f,
            "{} -> {} IPv{} {}/{}: predicted {}, probed {}",
            self.from,
            self.to,
            self.family,
            weft_probe::protocol_name(self.protocol),
            self.port,
            word(self.predicted),
            if self.probed { "connected" } else { "blocked" }
        )
    }
}

impl fmt::Display for Mismatches {
    /// A summary, each disagreement on a line, then the truth tables.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} cells compared: {} mismatches, {} pod-to-itself mismatches, {} unprobed, \
             {} unpredicted, {} unsupported",
            self.compared,
            self.cells.len(),
            self.self_cells.len(),
            self.unprobed.len(),
            self.unpredicted.len(),
            self.unsupported
        )?;
        for m in &self.cells {
            writeln!(f, "  mismatch: {m}")?;
        }
        for m in &self.self_cells {
            writeln!(f, "  pod-to-itself mismatch: {m}")?;
        }
        for e in &self.unprobed {
            writeln!(
                f,
                "  not probed: {} -> {} IPv{} {}/{}",
                e.from,
                e.to,
                e.family(),
                weft_probe::protocol_name(e.protocol),
                e.port
            )?;
        }
        for r in &self.unpredicted {
            writeln!(f, "  not predicted: {}", r.to_json_line())?;
        }
        f.write_str(&self.report)
    }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
