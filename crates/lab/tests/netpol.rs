//! The NetworkPolicy harness on a real lab: three dual-stack nodes running
//! the real weftd with the netpol model (x, y, z × a, b, c).
//!
//! With no policy, the evaluator predicts every cell allowed and the probed
//! matrix (TCP/80, UDP/81, IPv4 and IPv6) agrees cell for cell, pod-to-itself
//! cells included. With a deny-all policy in x, `policy explain` reports the
//! evaluator's view — denied by isolation, selected by x/deny-all — whatever
//! the datapath enforces yet; an invalid policy is refused at apply and
//! writes nothing.
//!
//! Then the datapath: the semantic suite ([`cases`]), updates, the "no
//! window" rule for new pods and anti-spoofing ([`updates`]) and seeded
//! random policies ([`random`]), each compared cell by cell with the
//! evaluator after `lab sync` ([`check`]).
//!
//! On `--datastore kube` (a real control plane, `$WEFT_KUBE_BIN`) a second
//! lab runs what exercises the kube source and the API's validation: the
//! no-policy matrix, the refused invalid policy, explain, the semantic
//! suite and the updates (policies created, labels of pods and namespaces
//! changed, all read through the API); the generated, new-pod window,
//! spoofing and random cases are datastore-independent and run on `file`
//! only.
//!
//! Kernel tier: needs root, the reference plugins and a built weftd
//! (`cargo build --bins`); skips loudly otherwise, fails instead where
//! `WEFT_REQUIRE_PRIVILEGED` is set (CI).

#[path = "netpol/cases.rs"]
mod cases;
#[path = "netpol/check.rs"]
mod check;
mod common;
#[path = "netpol/random.rs"]
mod random;
#[path = "netpol/updates.rs"]
mod updates;

use std::time::{Duration, Instant};

use common::{Lab, bin_dir, named, step};
use weft_lab::cluster::{self, Datastore};
use weft_lab::netpol::{self, ExplainQuery, Universe, compare, generate, predict};
use weft_lab::probe::{self, ProbeQuery};
use weft_lab::report;
use weft_lab::store::Store;
use weft_lab::{LabState, Layout};
use weft_model::Protocol;
use weft_policy::Endpoint;

fn main() {
    common::dispatch_argv0();
    let Some(weftd) = common::preflight_weftd("lab_netpol") else {
        return;
    };
    let bin = bin_dir(&[], &[("weftd", &weftd)]);
    let begun = Instant::now();
    for ds in common::datastores("lab_netpol") {
        suite(bin.path(), ds);
    }
    println!("lab_netpol: all passed in {:.1?}", begun.elapsed());
}

fn suite(bin: &std::path::Path, ds: Datastore) {
    let lab = Lab::new(&format!("lab-netpol-{}", ds.as_str()));
    let layout = &lab.layout;
    let opts = common::on(common::netpol_opts(bin, "vxlan", 1), ds);
    let state = cluster::up(layout, &opts)
        .unwrap_or_else(|e| panic!("lab up --datastore {}: {e}", ds.as_str()));
    assert_eq!(state.pods.len(), 9);
    report::sync(layout, Duration::from_secs(20)).unwrap_or_else(|e| panic!("lab sync: {e}"));
    let file = ds == Datastore::File;
    let step = |name: &str, f: &dyn Fn()| step(&named(ds, name), f);
    step("netpol/no_policy_prediction_matches_probes", &|| {
        no_policy_matches(layout)
    });
    step("netpol/invalid_policy_refused", &|| invalid_refused(layout));
    step("netpol/explain_deny_all", &|| explain_deny_all(layout));
    if file {
        step("netpol/generated_policies_apply_and_predict", &|| {
            generated_apply(layout)
        });
    }
    step("netpol/semantics_enforced", &|| cases::run_all(layout));
    step("netpol/updates_converge", &|| {
        updates::converge_on_changes(layout)
    });
    if file {
        step("netpol/no_window_for_new_pods", &|| {
            updates::no_window(layout)
        });
        step("netpol/anti_spoofing", &|| updates::anti_spoofing(layout));
        step("netpol/differential_random", &|| random::run(layout));
    }
}

fn no_policy_matches(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    let snapshot = netpol::snapshot(layout).unwrap();
    assert!(snapshot.policies.is_empty());
    for (protocol, port) in [(Protocol::Tcp, 80), (Protocol::Udp, 81)] {
        let query = ProbeQuery {
            from: Vec::new(),
            to: Vec::new(),
            port,
            protocol,
            families: Vec::new(),
            timeout: Duration::from_secs(2),
        };
        let predicted = predict(&state, &snapshot, &query).unwrap();
        assert_eq!(predicted.len(), 9 * 9 * 2, "{protocol:?}/{port}");
        assert!(
            predicted.iter().all(|e| e.allowed),
            "no policy, yet the evaluator denies something"
        );
        let probed = probe::probe(&state, &query).unwrap();
        let m = compare(&probed, &predicted);
        assert!(
            m.is_clean() && m.self_cells.is_empty() && m.compared == predicted.len(),
            "{protocol:?}/{port}:\n{m}"
        );
    }
}

fn invalid_refused(layout: &Layout) {
    let store = Store::open(layout).unwrap();
    let before = store.revision().unwrap();
    let err = store
        .apply_text(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: bad, namespace: x}\n\
             spec: {podSelector: {}, ingress: [{ports: [{port: 80, endPort: 79}]}]}\n",
            "bad-policy.yaml",
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.ingress[0].ports[0].endPort"), "{err}");
    assert_eq!(store.revision().unwrap(), before);
    assert!(
        store
            .get("NetworkPolicy", Some("x"), "bad")
            .unwrap()
            .is_none()
    );
}

fn explain_deny_all(layout: &Layout) {
    let store = Store::open(layout).unwrap();
    store
        .apply_text(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: deny-all, namespace: x}\nspec: {podSelector: {}}\n",
            "deny-all.yaml",
        )
        .unwrap();
    let snapshot = netpol::snapshot(layout).unwrap();
    let q = |from: Endpoint, family| ExplainQuery {
        from,
        to: Endpoint::pod("x", "b"),
        port: 80,
        protocol: Protocol::Tcp,
        family,
    };
    let e = netpol::explain::explain(&snapshot, &q(Endpoint::pod("y", "a"), None)).unwrap();
    let text = e.render();
    assert!(!e.allowed, "{text}");
    assert!(
        text.contains("ingress to x/b: denied by isolation, selected by x/deny-all"),
        "{text}"
    );
    // From an address: the pod holding it, in its family.
    let state = LabState::require(layout).unwrap();
    let ya6 = state.pod("y/a").unwrap().address(6).unwrap();
    let e = netpol::explain::explain(&snapshot, &q(Endpoint::Ip(ya6), None)).unwrap();
    assert_eq!(e.from.pod.as_deref(), Some("y/a"));
    assert_eq!(e.family, Some(6));
    assert!(!e.allowed && e.ingress.selected_by == ["x/deny-all"]);
    // Out of x, nothing is isolated.
    let out = ExplainQuery {
        to: Endpoint::pod("y", "b"),
        ..q(Endpoint::pod("x", "a"), Some(4))
    };
    assert!(netpol::explain::explain(&snapshot, &out).unwrap().allowed);
}

/// Random policies over the lab's own pod CIDRs go through `apply` (the
/// API's validation) untouched, all land in the snapshot, and the
/// evaluator predicts a matrix over them.
fn generated_apply(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    let cidrs: Vec<_> = state
        .nodes
        .iter()
        .flat_map(|n| n.pod_cidrs.clone())
        .collect();
    let docs = generate::policies(11, &Universe::netpol(&cidrs), 25);
    let store = Store::open(layout).unwrap();
    store.apply(docs, "generated policies").unwrap();
    let snapshot = netpol::snapshot(layout).unwrap();
    assert!(snapshot.rejected.is_empty(), "{:?}", snapshot.rejected);
    assert_eq!(snapshot.policies.len(), 25 + 1);
    let query = ProbeQuery {
        from: Vec::new(),
        to: Vec::new(),
        port: 80,
        protocol: Protocol::Tcp,
        families: Vec::new(),
        timeout: Duration::from_secs(1),
    };
    let predicted = predict(&state, &snapshot, &query).unwrap();
    assert_eq!(predicted.len(), 9 * 9 * 2);
}
