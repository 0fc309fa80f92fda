//! The one check every policy case ends with: wait until every agent has
//! applied the datastore's revision, probe TCP and UDP on ports 80 and 81
//! in both families, and set each matrix against the evaluator's
//! prediction. Pod-to-itself cells are counted apart, as the harness does.

use std::time::Duration;

use weft_lab::netpol::{self, compare, predict};
use weft_lab::probe::ProbeQuery;
use weft_lab::report;
use weft_lab::store::Store;
use weft_lab::{LabState, Layout};
use weft_model::Protocol;
use weft_probe::ProbeRecord;

/// Per-probe budget: a denied probe is dropped and waits this long. Lab
/// connections between namespaces take well under a millisecond, but four
/// matrices are probed at once on a small, busy CI machine.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The budget of the one retry of a matrix where an allowed cell failed:
/// a lost UDP datagram or a starved server must not read as "denied".
/// (A connection that succeeds is never retried: it proves the path.)
pub const RETRY_TIMEOUT: Duration = Duration::from_millis(1500);

/// The probed ports: what the netpol model's pods serve.
pub const PORTS: [(Protocol, u16); 4] = [
    (Protocol::Tcp, 80),
    (Protocol::Tcp, 81),
    (Protocol::Udp, 80),
    (Protocol::Udp, 81),
];

/// What one check found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Cells compared (all four matrices).
    pub compared: usize,
    /// Cells the evaluator denies.
    pub denied: usize,
    /// Pod-to-itself cells that disagree (reported, not counted).
    pub self_cells: usize,
}

/// Syncs, probes and compares; panics with `what`, the policies in force
/// and the side-by-side table of every matrix that disagrees.
pub fn converge(layout: &Layout, what: &str) -> Outcome {
    let outcome = try_converge(layout);
    match outcome {
        Ok(o) => {
            if o.self_cells > 0 {
                println!(
                    "    {what}: {} pod-to-itself cells differ (not counted)",
                    o.self_cells
                );
            }
            o
        }
        Err(report) => panic!("{what}: probes disagree with the evaluator\n{report}"),
    }
}

/// [`converge`] without panicking: the report of the mismatches, with the
/// policies in force, as the error.
pub fn try_converge(layout: &Layout) -> Result<Outcome, String> {
    report::sync(layout, Duration::from_secs(30)).unwrap_or_else(|e| panic!("lab sync: {e}"));
    let state = LabState::require(layout).unwrap();
    flush_conntrack(&state);
    let snapshot = netpol::snapshot(layout).unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = PORTS
            .iter()
            .map(|&(protocol, port)| {
                let (state, snapshot) = (&state, &snapshot);
                s.spawn(move || {
                    let query = ProbeQuery {
                        from: Vec::new(),
                        to: Vec::new(),
                        port,
                        protocol,
                        families: Vec::new(),
                        timeout: PROBE_TIMEOUT,
                    };
                    let predicted = predict(state, snapshot, &query).unwrap();
                    let denied = predicted.iter().filter(|e| !e.allowed).count();
                    let mut m = compare(&lab_probe(layout, state, &query), &predicted);
                    if m.cells.iter().any(|c| c.predicted && !c.probed) {
                        let query = ProbeQuery {
                            timeout: RETRY_TIMEOUT,
                            ..query
                        };
                        m = compare(&lab_probe(layout, state, &query), &predicted);
                    }
                    (protocol, port, denied, m)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = Outcome::default();
    let mut failures = String::new();
    for (protocol, port, denied, m) in results {
        out.compared += m.compared;
        out.denied += denied;
        out.self_cells += m.self_cells.len();
        if !m.is_clean() || m.unsupported > 0 {
            failures.push_str(&format!("--- {protocol:?}/{port}:\n{m}\n"));
            failures.push_str(&reprobe(&state, &m.cells));
        }
    }
    if failures.is_empty() {
        return Ok(out);
    }
    Err(format!(
        "policies in force (revision {}):\n{}\nrejected: {:?}\n{failures}",
        snapshot.revision,
        policies_json(layout),
        snapshot.rejected
    ))
}

/// `weftctl lab probe --json` for `q`, run as the CLI in a process of its
/// own, as an operator runs it.
///
/// A process per matrix also contains a leak outside this suite:
/// `weft_netlink::NetnsGuard::exit` forgets the guard with `mem::forget`,
/// which leaks the fd of the namespace it saved, and `weft_probe` exits one
/// guard per probe — one fd per probe. In-process, the suite's tens of
/// thousands of probes hit EMFILE and every later probe reads as "blocked".
fn lab_probe(layout: &Layout, state: &LabState, q: &ProbeQuery) -> Vec<ProbeRecord> {
    let out = std::process::Command::new(state.bin_dir.join("weftctl"))
        .arg("lab")
        .arg("--state-dir")
        .arg(layout.root())
        .args(["probe", "--json", "--port", &q.port.to_string()])
        .args(["--protocol", weft_probe::protocol_name(q.protocol)])
        .args(["--timeout-ms", &q.timeout.as_millis().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("run weftctl lab probe: {e}"));
    assert!(
        out.status.success(),
        "weftctl lab probe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("weftctl lab probe --json printed no JSON: {e}"));
    serde_json::from_value(doc["results"].clone())
        .unwrap_or_else(|e| panic!("weftctl lab probe --json: unexpected results: {e}"))
}

/// Probes the first few mismatching cells once more and says what each
/// probe saw (its error, or whom the echo named): the difference between
/// a policy drop (timeout) and a broken server (refused) or client.
fn reprobe(state: &LabState, cells: &[weft_lab::netpol::CellMismatch]) -> String {
    let mut out = String::new();
    for c in cells.iter().take(4) {
        let from = state.pod(&c.from).unwrap();
        let to = state.pod(&c.to).unwrap();
        let target = weft_probe::Target {
            netns: Some(weft_lab::netns::path(&from.netns)),
            address: to.address(c.family).unwrap(),
            port: c.port,
            protocol: c.protocol,
        };
        let opts = weft_probe::ProbeOpts {
            timeout: RETRY_TIMEOUT,
        };
        let r = weft_probe::probe(&target, &opts);
        out.push_str(&format!(
            "  again {} -> {} ({}): connected {} error {:?} peer {:?}\n",
            c.from, c.to, target.address, r.connected, r.error, r.peer_seen
        ));
    }
    out
}

/// Forgets the connections of earlier checks in every node's conntrack
/// table (inside the lab's node namespaces only). NetworkPolicy governs new
/// connections; an entry left from an allowed probe of the previous case
/// would let a new probe that happens to reuse its source port through as
/// "established", which says nothing about the policy now in force.
fn flush_conntrack(state: &LabState) {
    for node in &state.nodes {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &node.netns, "conntrack", "-F"])
            .output()
            .unwrap_or_else(|e| panic!("run conntrack -F in {}: {e}", node.netns));
        assert!(
            out.status.success(),
            "conntrack -F in {}: {}",
            node.netns,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every NetworkPolicy in the datastore, as stored (JSON, one per line).
pub fn policies_json(layout: &Layout) -> String {
    let store = Store::open(layout).unwrap();
    let snapshot = netpol::snapshot(layout).unwrap();
    snapshot
        .policies
        .iter()
        .filter_map(|p| {
            store
                .get("NetworkPolicy", Some(&p.namespace), &p.name)
                .unwrap()
        })
        .map(|doc| serde_json::to_string(&doc).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Deletes every NetworkPolicy (between cases).
pub fn delete_all_policies(layout: &Layout) {
    let store = Store::open(layout).unwrap();
    for p in netpol::snapshot(layout).unwrap().policies {
        store
            .delete("NetworkPolicy", Some(&p.namespace), &p.name)
            .unwrap();
    }
}
