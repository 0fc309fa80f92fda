//! Reachability matrices: the evaluator's prediction for every pair of
//! endpoints, in the compact form upstream's e2e truth tables print
//! (`.` reachable, `X` blocked; rows are sources, columns destinations).
//!
//! The lab's probes produce the same shape, so a prediction and a probe
//! compare cell by cell.

use std::fmt;

use weft_model::Protocol;

use crate::evaluate::evaluate;
use crate::view::{Endpoint, IpFamily, Packet, PolicyView};

/// Who can reach whom on one port and protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reachability {
    /// Row and column order.
    pub endpoints: Vec<Endpoint>,
    /// `cells[from][to]`: the packet from `from` to `to` is allowed.
    pub cells: Vec<Vec<bool>>,
}

/// A cell where two matrices disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The source.
    pub from: Endpoint,
    /// The destination.
    pub to: Endpoint,
    /// What the left-hand matrix says.
    pub expected: bool,
    /// What the right-hand matrix says.
    pub actual: bool,
}

/// Errors reading a matrix from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    /// The text has the wrong number of rows.
    #[error("expected {expected} rows, found {found}")]
    Rows {
        /// Rows needed (one per endpoint).
        expected: usize,
        /// Rows found.
        found: usize,
    },
    /// A row has the wrong number of cells or a character other than `.`/`X`.
    #[error("row {row}: {reason}")]
    Row {
        /// Zero-based row index.
        row: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl Reachability {
    /// The evaluator's matrix for `endpoints` on `protocol`/`port`, in
    /// `family` (`None`: each packet's default, see [`Packet::family`]).
    pub fn predict(
        view: &PolicyView,
        endpoints: &[Endpoint],
        protocol: Protocol,
        port: u16,
        family: Option<IpFamily>,
    ) -> Self {
        let cells = endpoints
            .iter()
            .map(|from| {
                endpoints
                    .iter()
                    .map(|to| {
                        let mut packet = Packet::new(from.clone(), to.clone(), protocol, port);
                        packet.family = family;
                        evaluate(view, &packet).allowed
                    })
                    .collect()
            })
            .collect();
        Self {
            endpoints: endpoints.to_vec(),
            cells,
        }
    }

    /// Reads a matrix: one row per endpoint, `.` for allowed and `X` for
    /// blocked; whitespace inside a row is ignored, so rows may be grouped
    /// (`"... X.. ..."`).
    pub fn parse(endpoints: &[Endpoint], rows: &[&str]) -> Result<Self, MatrixError> {
        if rows.len() != endpoints.len() {
            return Err(MatrixError::Rows {
                expected: endpoints.len(),
                found: rows.len(),
            });
        }
        let cells = rows
            .iter()
            .enumerate()
            .map(|(row, text)| {
                let cells = text
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .map(|c| match c {
                        '.' => Ok(true),
                        'X' => Ok(false),
                        other => Err(MatrixError::Row {
                            row,
                            reason: format!("{other:?} is neither '.' nor 'X'"),
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if cells.len() != endpoints.len() {
                    return Err(MatrixError::Row {
                        row,
                        reason: format!("{} cells, expected {}", cells.len(), endpoints.len()),
                    });
                }
                Ok(cells)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            endpoints: endpoints.to_vec(),
            cells,
        })
    }

    /// The cells where `self` (expected) and `actual` differ; both must
    /// cover the same endpoints in the same order.
    pub fn mismatches(&self, actual: &Self) -> Vec<Mismatch> {
        let mut out = Vec::new();
        for (i, from) in self.endpoints.iter().enumerate() {
            for (j, to) in self.endpoints.iter().enumerate() {
                let expected = self.cells[i][j];
                let got = actual.cells.get(i).and_then(|r| r.get(j)).copied();
                if got != Some(expected) {
                    out.push(Mismatch {
                        from: from.clone(),
                        to: to.clone(),
                        expected,
                        actual: got.unwrap_or(!expected),
                    });
                }
            }
        }
        out
    }
}

impl fmt::Display for Reachability {
    /// A truth table with endpoint names on both axes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.endpoints.iter().map(ToString::to_string).collect();
        let width = names.iter().map(String::len).max().unwrap_or(0);
        write!(f, "{:width$}", "")?;
        for (j, _) in names.iter().enumerate() {
            write!(f, " {j}")?;
        }
        writeln!(f)?;
        for (i, name) in names.iter().enumerate() {
            write!(f, "{name:width$}")?;
            for cell in &self.cells[i] {
                write!(f, " {}", if *cell { '.' } else { 'X' })?;
            }
            writeln!(f, "   ({i})")?;
        }
        Ok(())
    }
}
