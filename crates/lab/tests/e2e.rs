//! The lab end to end, before the agent exists: `lab up --no-agent` with two
//! dual-stack nodes, pods attached through the real weft plugin chain,
//! same-node reachability over TCP and UDP on IPv4 and IPv6, status, exec,
//! a failed pod start and a failed `up` that leave nothing, `lab pod del`
//! releasing the address, and `lab down` leaving no namespace, process or
//! file. Kernel tier: needs root; skips loudly otherwise.
//!
//! The test binary has its own `main` (harness = false) and doubles as the
//! `weft` plugin and as `weftctl` (for the pods' `lab serve`), called
//! through symlinks of those names: the plugin code is exactly the `weft`
//! binary's, without depending on another package's build.

use std::net::IpAddr;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use weft_lab::cli::{LabArgs, LabCmd};
use weft_lab::cluster::{self, UpOpts};
use weft_lab::kubelet::{self, PodSpec};
use weft_lab::layout::NodePaths;
use weft_lab::model::ModelKind;
use weft_lab::probe::{self, ProbeQuery};
use weft_lab::store::Store;
use weft_lab::{LabState, Layout, netns, procs, report};
use weft_model::Protocol;
use weft_testkit::TempDir;

#[derive(Parser)]
struct Weftctl {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(clap::Subcommand)]
enum Top {
    Lab(LabArgs),
}

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    match Path::new(&argv0).file_name().and_then(|n| n.to_str()) {
        Some("weft") => std::process::exit(weft_cni::plugin::run()),
        Some("weftctl") => {
            let Top::Lab(args) = Weftctl::parse().cmd;
            match weft_lab::run_lab(args) {
                Ok(code) => std::process::exit(code),
                Err(e) => {
                    eprintln!("weftctl: {e:#}");
                    std::process::exit(1)
                }
            }
        }
        _ => {}
    }
    if !weft_testkit::privileged("lab_e2e") {
        return;
    }
    if !Path::new("/usr/lib/cni/tuning").exists() {
        if std::env::var_os(weft_testkit::REQUIRE_PRIVILEGED_ENV).is_some() {
            panic!("lab_e2e: needs the reference plugins in /usr/lib/cni");
        }
        eprintln!("\n*** SKIPPED lab_e2e: needs the reference tuning plugin in /usr/lib/cni ***\n");
        return;
    }
    failed_up_leaves_nothing();
    println!("test failed_up_leaves_nothing ... ok");
    same_node_lab();
    println!("test same_node_lab ... ok");
}

/// Removes the lab on drop, also when an assertion fails.
struct Lab {
    layout: Layout,
    _state: TempDir,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let state = TempDir::new(tag).unwrap();
        Lab {
            layout: Layout::new(state.path().join("lab")),
            _state: state,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = cluster::down(&self.layout) {
            eprintln!("lab_e2e: cleanup of {}: {e}", self.layout.root().display());
        }
    }
}

/// A directory where `weft` and `weftctl` are this test binary.
fn bin_dir(extra: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new("lab-bin").unwrap();
    let me = std::env::current_exe().unwrap();
    for name in ["weft", "weftctl"] {
        symlink(&me, dir.path().join(name)).unwrap();
    }
    for (name, script) in extra {
        let path = dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn opts(bin: &Path, agent: bool) -> UpOpts {
    UpOpts {
        nodes: 2,
        backend: "vxlan".into(),
        families: vec![4, 6],
        model: ModelKind::None,
        agent,
        bin_dir: bin.to_path_buf(),
        agent_timeout: Duration::from_secs(10),
    }
}

fn own_netns(layout: &Layout) -> Vec<String> {
    netns::list(|n| layout.owns_netns(n)).unwrap()
}

/// An agent that dies at once: `up` must fail naming the node and its log,
/// and remove everything it built.
fn failed_up_leaves_nothing() {
    let bin = bin_dir(&[(
        "weftd",
        "#!/bin/sh\necho 'weftd: cannot start' >&2\nexit 3\n",
    )]);
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

fn pod(ns: &str, name: &str, node: &str) -> PodSpec {
    PodSpec {
        namespace: ns.into(),
        name: name.into(),
        node: Some(node.into()),
        labels: [("pod".to_string(), name.to_string())].into(),
        ports: vec![(Protocol::Tcp, 80), (Protocol::Udp, 80)],
    }
}

fn same_node_lab() {
    let bin = bin_dir(&[]);
    let lab = Lab::new("lab-e2e");
    let layout = &lab.layout;
    let mut state = cluster::up(layout, &opts(bin.path(), false)).unwrap();
    let store = Store::open(layout).unwrap();
    assert_eq!(
        own_netns(layout).len(),
        3,
        "underlay and two nodes: {:?}",
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
    assert_eq!(status["nodes"][0]["podCIDRs"][0], "10.244.1.0/24");
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
    let ipam =
        weft_ipam::Store::open(&NodePaths::new(layout.node_dir("node1")).ipam, "weft").unwrap();
    let held: Vec<IpAddr> = ipam
        .list()
        .unwrap()
        .into_iter()
        .flat_map(|r| r.ips)
        .collect();
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
