//! The lab end to end, before the agent exists: `lab up --no-agent` with two
//! dual-stack nodes, pods attached through the real weft plugin chain,
//! same-node reachability over TCP and UDP on IPv4 and IPv6, status, exec,
//! a failed pod start and a failed `up` that leave nothing, `lab pod del`
//! releasing the address, and `lab down` leaving no namespace, process or
//! file. Kernel tier: needs root; skips loudly otherwise. The same-node
//! lab runs again on `--datastore kube` (a real control plane from
//! `$WEFT_KUBE_BIN`): Pods created, given their status and deleted
//! through the API, pod CIDRs from kube-controller-manager.
//!
//! The test binary has its own `main` (harness = false) and doubles as the
//! `weft` plugin and as `weftctl` (for the pods' `lab serve`), called
//! through symlinks of those names: the plugin code is exactly the `weft`
//! binary's, without depending on another package's build.

mod common;

use std::time::Duration;

use common::{Lab, bin_dir, ipam_held, named, opts, own_netns, pod};
use weft_lab::cli::{LabArgs, LabCmd};
use weft_lab::cluster::{self, Datastore};
use weft_lab::kubelet;
use weft_lab::layout::NodePaths;
use weft_lab::probe::{self, ProbeQuery};
use weft_lab::store::Store;
use weft_lab::{LabState, netns, procs, report};
use weft_model::Protocol;

fn main() {
    common::dispatch_argv0();
    if !common::preflight("lab_e2e") {
        return;
    }
    failed_up_leaves_nothing();
    println!("test failed_up_leaves_nothing ... ok");
    for ds in common::datastores("lab_e2e") {
        same_node_lab(ds);
        println!("test {} ... ok", named(ds, "same_node_lab"));
    }
}

/// An agent that dies at once: `up` must fail naming the node and its log,
/// and remove everything it built.
fn failed_up_leaves_nothing() {
    let bin = bin_dir(
        &[(
            "weftd",
            "#!/bin/sh\necho 'weftd: cannot start' >&2\nexit 3\n",
        )],
        &[],
    );
    let lab = Lab::new("lab-e2e-failed");
    let err = cluster::up(&lab.layout, &opts(bin.path(), true))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node node1") && err.contains("weftd.log"),
        "{err}"
    );
    assert!(
        err.contains("cannot start"),
        "the log's tail is in the error: {err}"
    );
    assert_eq!(own_netns(&lab.layout), Vec::<String>::new());
    assert!(!lab.layout.root().exists(), "state removed");
}

fn same_node_lab(ds: Datastore) {
    let bin = bin_dir(&[], &[]);
    let lab = Lab::new(&format!("lab-e2e-{}", ds.as_str()));
    let layout = &lab.layout;
    let mut state = cluster::up(layout, &common::on(opts(bin.path(), false), ds)).unwrap();
    let store = Store::open(layout).unwrap();
    let control_plane = usize::from(ds == Datastore::Kube);
    assert_eq!(
        own_netns(layout).len(),
        4 + control_plane,
        "underlay, external client, two nodes (and the control plane): {:?}",
        own_netns(layout)
    );

    for (ns, name, node) in [
        ("x", "a", "node1"),
        ("x", "b", "node1"),
        ("y", "c", "node2"),
    ] {
        kubelet::add_pod(layout, &mut state, &store, &pod(ns, name, node)).unwrap();
    }

    // Same node: everything connects, both protocols, both families.
    let same = ["x/a".to_string(), "x/b".to_string()];
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let records = probe::probe(
            &state,
            &ProbeQuery {
                from: same.to_vec(),
                to: same.to_vec(),
                port: 80,
                protocol,
                families: Vec::new(),
                timeout: Duration::from_secs(2),
            },
        )
        .unwrap();
        assert_eq!(records.len(), 8, "2 x 2 pods x 2 families");
        let json = probe::to_json(&records);
        for r in json["results"].as_array().unwrap() {
            let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 6, "{r}");
            for k in ["from", "to", "address", "port", "protocol", "connected"] {
                assert!(keys.contains(&k), "{r}");
            }
            assert_eq!(r["connected"], true, "{json}");
        }
    }

    // Status: well-formed, every pod inside its node's CIDRs.
    let status = serde_json::to_value(report::status(layout).unwrap()).unwrap();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 2, "{status}");
    assert_eq!(status["pods"].as_array().unwrap().len(), 3, "{status}");
    match ds {
        Datastore::File => assert_eq!(status["nodes"][0]["podCIDRs"][0], "10.244.1.0/24"),
        // kube-controller-manager's choice, from the cluster CIDR.
        Datastore::Kube => {
            let cidrs = &state.node("node1").unwrap().pod_cidrs;
            assert_eq!(cidrs.len(), 2, "{cidrs:?}");
            assert_eq!(status["nodes"][0]["podCIDRs"][0], cidrs[0].to_string());
            assert!(cidrs[0].to_string().starts_with("10.244."), "{cidrs:?}");
            let node = store.get("Node", None, "node1").unwrap().unwrap();
            assert_eq!(node["spec"]["podCIDRs"][0], cidrs[0].to_string());
            assert_eq!(node["status"]["addresses"][0]["address"], "172.30.0.11");
        }
    }
    assert_eq!(status["nodes"][1]["addresses"][1], "fd00:30::12/64");
    for p in status["pods"].as_array().unwrap() {
        assert_eq!(p["ips"].as_array().unwrap().len(), 2, "{p}");
        assert_eq!(p["serverAlive"], true, "{p}");
    }
    assert!(report::render(&report::status(layout).unwrap()).contains("x/b"));
    let pod_obj = store.get("Pod", Some("x"), "a").unwrap().unwrap();
    assert_eq!(pod_obj["status"]["phase"], "Running");
    assert_eq!(pod_obj["status"]["podIPs"].as_array().unwrap().len(), 2);

    // exec propagates the exit code and runs inside the pod.
    let exec = |cmd: &[&str]| {
        weft_lab::run_lab(LabArgs {
            state_dir: Some(layout.root().to_path_buf()),
            cmd: LabCmd::Exec {
                pod: "x/a".into(),
                command: cmd.iter().map(|s| s.to_string()).collect(),
            },
        })
        .unwrap()
    };
    assert_eq!(exec(&["sh", "-c", "exit 3"]), 3);
    assert_eq!(exec(&["sh", "-c", "ip link show eth0 >/dev/null"]), 0);

    // A pod whose CNI ADD fails leaves nothing behind.
    let node2 = NodePaths::new(layout.node_dir("node2"));
    let saved = node2.node_state.with_extension("saved");
    std::fs::rename(&node2.node_state, &saved).unwrap();
    let err = kubelet::add_pod(layout, &mut state, &store, &pod("y", "d", "node2")).unwrap_err();
    assert!(err.to_string().contains("weft"), "{err}");
    std::fs::rename(&saved, &node2.node_state).unwrap();
    assert!(!netns::exists(&layout.pod_netns("node2", "y", "d")));
    assert!(state.pod("y/d").is_err());
    assert!(LabState::require(layout).unwrap().pod("y/d").is_err());
    assert!(store.get("Pod", Some("y"), "d").unwrap().is_none());

    // Two pods whose namespace names would read the same: the second is
    // refused before it creates (or, on cleanup, deletes) anything.
    let mut quiet = pod("x", "a-b", "node1");
    quiet.ports.clear();
    let first = kubelet::add_pod(layout, &mut state, &store, &quiet).unwrap();
    assert!(first.server.is_none(), "no ports, no server");
    let err = kubelet::add_pod(layout, &mut state, &store, &pod("x-a", "b", "node1")).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(
        netns::exists(&first.netns),
        "the first pod keeps its namespace"
    );
    assert!(store.get("Pod", Some("x-a"), "b").unwrap().is_none());
    kubelet::del_pod(layout, &mut state, &store, "x/a-b").unwrap();

    // pod del: server gone, namespace gone, address released.
    let b = state.pod("x/b").unwrap().clone();
    kubelet::del_pod(layout, &mut state, &store, "x/b").unwrap();
    assert!(!procs::alive(&b.server.unwrap()));
    assert!(!netns::exists(&b.netns));
    assert!(store.get("Pod", Some("x"), "b").unwrap().is_none());
    let held = ipam_held(layout, "node1");
    for ip in &b.ips {
        assert!(!held.contains(ip), "{ip} still reserved: {held:?}");
    }
    assert_eq!(held.len(), 2, "x/a's two addresses remain: {held:?}");

    // down: nothing left.
    let servers: Vec<_> = state.pods.iter().filter_map(|p| p.server).collect();
    cluster::down(layout).unwrap();
    assert_eq!(own_netns(layout), Vec::<String>::new());
    assert!(servers.iter().all(|s| !procs::alive(s)));
    assert!(!layout.root().exists(), "{}", layout.root().display());
    // Idempotent.
    cluster::down(layout).unwrap();
}
