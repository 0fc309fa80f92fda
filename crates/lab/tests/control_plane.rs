//! The lab's real control plane (`--datastore kube`): etcd,
//! kube-apiserver and kube-controller-manager in `<prefix>-cp`.
//!
//! A two-segment lab (node2 reaches the API through the router) without
//! agents or pods: the API answers `/readyz`; weft's ServiceAccount token
//! works from a node's namespace and its RBAC is what deploy/weft.yaml
//! says (watch pods and patch nodes: yes; delete pods, read secrets: no);
//! `kubectl apply --dry-run=server -f deploy/weft.yaml` validates the
//! manifests; the real controllers run (a Node gets dual-stack pod CIDRs
//! of the lab's shape, a Service gets a ClusterIP and an EndpointSlice);
//! `lab down` leaves no namespace, process or file. Then an `up` whose
//! kube-apiserver dies at once fails naming it, with its log, and leaves
//! nothing either.
//!
//! Lab tier: needs root and the control plane's binaries in
//! `$WEFT_KUBE_BIN` (`tests/kube/build.sh` prints the directory); skips
//! loudly without them, fails instead where `WEFT_REQUIRE_PRIVILEGED` is
//! set (CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Lab, bin_dir, own_netns, step};
use weft_lab::cluster::{self, Datastore, UpOpts};
use weft_lab::control_plane::{self, KUBE_BIN_ENV};
use weft_lab::model::ModelKind;
use weft_lab::state::ProcRecord;
use weft_lab::{LabState, Layout, netns, procs};

/// How long the controllers get to act on an object.
const CONTROLLER_WAIT: Duration = Duration::from_secs(30);

fn main() {
    common::dispatch_argv0();
    let test = "lab_control_plane";
    if !weft_testkit::privileged(test) {
        return;
    }
    let Some(kube_bin) = std::env::var_os(KUBE_BIN_ENV).map(PathBuf::from) else {
        common::skip(
            test,
            &format!(
                "needs the control plane's binaries: {KUBE_BIN_ENV}=\"$(tests/kube/build.sh)\""
            ),
        );
        return;
    };
    let bin = bin_dir(&[], &[]);
    let begun = Instant::now();
    control_plane_lab(bin.path(), &kube_bin);
    step("failed_up_leaves_nothing", || {
        failed_up_leaves_nothing(bin.path(), &kube_bin)
    });
    println!("{test}: all passed in {:.1?}", begun.elapsed());
}

fn opts(bin: &Path, kube_bin: &Path) -> UpOpts {
    UpOpts {
        nodes: 2,
        segments: 2,
        backend: "vxlan".into(),
        families: vec![4, 6],
        model: ModelKind::None,
        agent: false,
        bin_dir: bin.to_path_buf(),
        agent_timeout: Duration::from_secs(10),
        datastore: Datastore::Kube,
        kube_bin_dir: Some(kube_bin.to_path_buf()),
    }
}

fn control_plane_lab(bin: &Path, kube_bin: &Path) {
    let lab = Lab::new("lab-cp");
    let layout = &lab.layout;
    let begun = Instant::now();
    let state = cluster::up(layout, &opts(bin, kube_bin)).unwrap();
    println!("lab up --datastore kube took {:.1?}", begun.elapsed());
    assert_eq!(state.datastore, "kube");
    let cp = state
        .control_plane
        .clone()
        .expect("a kube lab records its control plane");
    let processes: Vec<ProcRecord> = cp.processes().collect();
    assert_eq!(processes.len(), 3, "{cp:?}");
    assert!(processes.iter().all(procs::alive));

    step("control_plane/readyz", || {
        let out = ok(kubectl(layout, &state, &["get", "--raw", "/readyz"], None));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    });
    step("control_plane/agent_token_rbac_from_a_routed_node", || {
        agent_rbac(layout, &state)
    });
    step("control_plane/manifests_dry_run", || {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/weft.yaml");
        let text = std::fs::read(&manifest).unwrap();
        let args = ["apply", "--dry-run=server", "-f", "-"];
        let out = ok(kubectl(layout, &state, &args, Some(&text)));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("daemonset.apps/weft"), "{said}");
    });
    step("control_plane/node_ipam", || node_ipam(layout, &state));
    step("control_plane/service_and_endpointslice", || {
        service_and_slice(layout, &state)
    });

    let begun = Instant::now();
    cluster::down(layout).unwrap();
    println!("lab down took {:.1?}", begun.elapsed());
    step("control_plane/down_leaves_nothing", || {
        assert!(own_netns(layout).is_empty(), "{:?}", own_netns(layout));
        for p in &processes {
            assert!(!procs::alive(p), "pid {} survived lab down", p.pid);
        }
        assert!(
            !layout.root().exists(),
            "{} survived",
            layout.root().display()
        );
    });
}

/// Runs the admin kubectl, failing the test when it cannot run.
fn kubectl(layout: &Layout, state: &LabState, args: &[&str], stdin: Option<&[u8]>) -> Output {
    control_plane::kubectl(layout, state, args, stdin).unwrap()
}

/// `out`, after asserting kubectl succeeded.
fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "kubectl failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The agent's kubeconfig used from node2's namespace (segment 1: the API
/// is reached through the router), as weftd would: `auth can-i` answers
/// what the ClusterRole grants.
fn agent_rbac(layout: &Layout, state: &LabState) {
    let kubeconfig = control_plane::agent_kubeconfig(layout, state, "node2").unwrap();
    let node = state.node("node2").unwrap();
    assert_ne!(node.segment, 0, "node2 must sit on another segment");
    let kubectl_bin = state
        .control_plane
        .as_ref()
        .unwrap()
        .kube_bin_dir
        .join("kubectl");
    let can_i = |verb: &str, resource: &str| -> bool {
        let mut cmd = Command::new(&kubectl_bin);
        cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["auth", "can-i", verb, resource])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = netns::spawn_in(&node.netns, &mut cmd)
            .unwrap()
            .wait_with_output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            answer == "yes" || answer == "no",
            "can-i {verb} {resource}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answer == "yes"
    };
    for (verb, resource) in [
        ("watch", "pods"),
        ("list", "networkpolicies.networking.k8s.io"),
        ("watch", "endpointslices.discovery.k8s.io"),
        ("patch", "nodes"),
    ] {
        assert!(can_i(verb, resource), "weft may not {verb} {resource}");
    }
    for (verb, resource) in [
        ("delete", "pods"),
        ("get", "secrets"),
        ("update", "nodes/status"),
    ] {
        assert!(!can_i(verb, resource), "weft may {verb} {resource}");
    }
    // The admin's impersonation answers the same: the token is the
    // ServiceAccount's, not something broader.
    let sa = "--as=system:serviceaccount:weft-system:weft";
    let out = kubectl(
        layout,
        state,
        &["auth", "can-i", "delete", "pods", sa],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
}

/// kube-controller-manager gives a new Node pod CIDRs of both families,
/// inside the lab's cluster CIDRs and of the file mode's prefix lengths.
fn node_ipam(layout: &Layout, state: &LabState) {
    let node = br#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ipam-probe"}}"#;
    ok(kubectl(layout, state, &["apply", "-f", "-"], Some(node)));
    let cidrs = wait_for("spec.podCIDRs of Node ipam-probe", || {
        let args = [
            "get",
            "node",
            "ipam-probe",
            "-o",
            "jsonpath={.spec.podCIDRs}",
        ];
        let out = ok(kubectl(layout, state, &args, None));
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!text.is_empty()).then_some(text)
    });
    let cidrs: Vec<ipnet::IpNet> = serde_json::from_str::<Vec<String>>(&cidrs)
        .unwrap()
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    let cluster = weft_lab::underlay::cluster_cidrs(&[4, 6]);
    assert_eq!(cidrs.len(), 2, "{cidrs:?}");
    assert_eq!(cidrs[0].prefix_len(), weft_lab::underlay::POD_PREFIX_V4);
    assert_eq!(cidrs[1].prefix_len(), weft_lab::underlay::POD_PREFIX_V6);
    for (c, range) in cidrs.iter().zip(&cluster) {
        assert!(range.contains(c), "{c} outside {range}");
    }
    ok(kubectl(
        layout,
        state,
        &["delete", "node", "ipam-probe"],
        None,
    ));
}

/// A dual-stack Service gets ClusterIPs from the lab's Service CIDRs and
/// the EndpointSlice controller makes its slices.
fn service_and_slice(layout: &Layout, state: &LabState) {
    let svc = br#"{"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "probe", "namespace": "default"},
        "spec": {"ipFamilyPolicy": "RequireDualStack", "selector": {"app": "probe"},
                 "ports": [{"port": 80, "protocol": "TCP"}]}}"#;
    ok(kubectl(layout, state, &["apply", "-f", "-"], Some(svc)));
    let args = [
        "get",
        "service",
        "probe",
        "-o",
        "jsonpath={.spec.clusterIPs}",
    ];
    let ips = String::from_utf8_lossy(&ok(kubectl(layout, state, &args, None)).stdout).to_string();
    assert!(
        ips.contains("10.96.") && ips.contains("fd00:10:96::"),
        "{ips}"
    );
    wait_for("the EndpointSlices of Service probe", || {
        let args = [
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=probe",
            "-o",
            "name",
        ];
        let out = ok(kubectl(layout, state, &args, None));
        let names = String::from_utf8_lossy(&out.stdout).to_string();
        (names.lines().count() == 2).then_some(names)
    });
}

/// Polls `f` until it returns something, failing after [`CONTROLLER_WAIT`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + CONTROLLER_WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {CONTROLLER_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A kube-apiserver that exits at once: `up` fails naming it and showing
/// its log, and removes what it built (etcd included).
fn failed_up_leaves_nothing(bin: &Path, kube_bin: &Path) {
    let links: Vec<(&str, PathBuf)> = ["etcd", "kube-controller-manager", "kubectl"]
        .iter()
        .map(|b| (*b, kube_bin.join(b)))
        .collect();
    let links: Vec<(&str, &Path)> = links.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let broken = bin_dir(
        &[(
            "kube-apiserver",
            "#!/bin/sh\necho 'weft test: this apiserver is broken' >&2\nexit 3\n",
        )],
        &links,
    );
    let lab = Lab::new("lab-cp-fail");
    let layout = &lab.layout;
    let err = cluster::up(layout, &opts(bin, broken.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("kube-apiserver exited"), "{err}");
    assert!(err.contains("this apiserver is broken"), "{err}");
    assert!(own_netns(layout).is_empty(), "{:?}", own_netns(layout));
    assert!(
        !layout.root().exists(),
        "{} survived",
        layout.root().display()
    );
}
