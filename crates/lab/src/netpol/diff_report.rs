//! The differential harness's truth tables: prediction and probe side by
//! side, one pair per (family, protocol, port), mismatching cells marked.

use std::fmt::Write as _;

use weft_model::Protocol;
use weft_probe::ProbeRecord;

use super::diff::Expectation;
use crate::report::table;
use crate::state::family_of;

/// The legend printed above the tables.
pub(crate) const LEGEND: &str = "(. allowed/connected, X denied/blocked, ? cannot probe, \
- no cell; ! mismatch, * pod-to-itself mismatch)";

/// One table pair's identity: family, protocol, port.
type Group = (u8, Protocol, u16);

/// Renders every group that either side has, in order of appearance.
pub(crate) fn render(probed: &[ProbeRecord], predicted: &[Expectation]) -> String {
    let mut groups: Vec<Group> = Vec::new();
    let keys = predicted
        .iter()
        .map(|e| (e.family(), e.protocol, e.port))
        .chain(
            probed
                .iter()
                .map(|r| (family_of(r.address), r.protocol, r.port)),
        );
    for g in keys {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "PREDICTED | PROBED  {LEGEND}");
    for group in groups {
        group_table(&mut out, group, probed, predicted);
    }
    out
}

fn group_table(out: &mut String, group: Group, probed: &[ProbeRecord], predicted: &[Expectation]) {
    let (family, protocol, port) = group;
    let preds: Vec<&Expectation> = predicted
        .iter()
        .filter(|e| (e.family(), e.protocol, e.port) == group)
        .collect();
    let recs: Vec<&ProbeRecord> = probed
        .iter()
        .filter(|r| (family_of(r.address), r.protocol, r.port) == group)
        .collect();
    let mut froms: Vec<&str> = Vec::new();
    let mut tos: Vec<&str> = Vec::new();
    let pairs = preds
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .chain(recs.iter().map(|r| (r.from.as_str(), r.to.as_str())));
    for (f, t) in pairs {
        if !froms.contains(&f) {
            froms.push(f);
        }
        if !tos.contains(&t) {
            tos.push(t);
        }
    }
    let _ = writeln!(
        out,
        "\nIPv{family} {}/{port}",
        weft_probe::protocol_name(protocol)
    );
    let mut header = vec!["FROM\\TO".to_owned()];
    header.extend(tos.iter().map(|t| t.to_string()));
    header.push("|".to_owned());
    header.extend(tos.iter().map(|t| t.to_string()));
    let mut rows = vec![header];
    for f in &froms {
        let mut left = vec![f.to_string()];
        let mut right = Vec::new();
        for t in &tos {
            let pred = preds.iter().find(|e| e.from == *f && e.to == *t);
            let rec = recs.iter().find(|r| r.from == *f && r.to == *t);
            left.push(pred.map_or("-", |e| mark(e.allowed)).to_owned());
            let mut cell = match rec {
                None => "-".to_owned(),
                Some(r) if r.unsupported => "?".to_owned(),
                Some(r) => mark(r.connected).to_owned(),
            };
            if let (Some(e), Some(r)) = (pred, rec)
                && !r.unsupported
                && r.connected != e.allowed
            {
                cell.push(if f == t { '*' } else { '!' });
            }
            right.push(cell);
        }
        left.push("|".to_owned());
        left.extend(right);
        rows.push(left);
    }
    table(out, &rows);
}

fn mark(pass: bool) -> &'static str {
    if pass { "." } else { "X" }
}
