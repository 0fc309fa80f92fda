//! What the lab's end-to-end test binaries share: the argv[0] trick that
//! lets a test binary double as `weft` and `weftctl`, the preflight checks
//! that skip loudly, a lab that removes itself on drop, and small fixtures.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::IpAddr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use weft_lab::cli::LabArgs;
use weft_lab::cluster::{self, Datastore, UpOpts};
use weft_lab::kubelet::PodSpec;
use weft_lab::layout::NodePaths;
use weft_lab::model::ModelKind;
use weft_lab::{Layout, netns};
use weft_model::Protocol;
use weft_testkit::TempDir;

/// Names the `weftd` a test should run instead of the workspace build's.
pub const WEFTD_ENV: &str = "WEFT_WEFTD";

/// Names the directory with the control plane's binaries (what
/// `tests/kube/build.sh` prints); without it the `kube` variants skip.
pub const KUBE_BIN_ENV: &str = "WEFT_KUBE_BIN";

/// Restricts a run to one datastore (`file` or `kube`); unset, the suites
/// run on both.
pub const DATASTORE_ENV: &str = "WEFT_LAB_DATASTORE";

#[derive(Parser)]
struct Weftctl {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(clap::Subcommand)]
enum Top {
    Lab(LabArgs),
}

/// Runs as the `weft` plugin or as `weftctl` when called through a symlink
/// of that name (and never returns then); returns otherwise.
pub fn dispatch_argv0() {
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
}

/// Reports `test` skipped (or fails it where skips are not allowed) for
/// `why`; the caller then returns.
pub fn skip(test: &str, why: &str) -> bool {
    if std::env::var_os(weft_testkit::REQUIRE_PRIVILEGED_ENV).is_some() {
        panic!("{test}: {why}");
    }
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    false
}

/// Whether the lab tests can run here: root, iproute2 and the reference
/// tuning plugin the lab's chain uses.
pub fn preflight(test: &str) -> bool {
    if !weft_testkit::privileged(test) {
        return false;
    }
    if !Path::new("/usr/lib/cni/tuning").exists() {
        return skip(test, "needs the reference tuning plugin in /usr/lib/cni");
    }
    true
}

/// [`preflight`], then the real `weftd` ([`weftd`]): `None` (reported
/// skipped) when either is missing.
pub fn preflight_weftd(test: &str) -> Option<PathBuf> {
    if !preflight(test) {
        return None;
    }
    let weftd = weftd();
    if weftd.is_none() {
        skip(
            test,
            &format!("needs a built weftd (cargo build --bins, or ${WEFTD_ENV})"),
        );
    }
    weftd
}

/// The datastores `test` runs on: `file`, and `kube` when the control
/// plane's binaries are at `$WEFT_KUBE_BIN` (else the kube variant is
/// reported skipped, or fails where skips are not allowed), both unless
/// `$WEFT_LAB_DATASTORE` names one.
pub fn datastores(test: &str) -> Vec<Datastore> {
    let only = std::env::var(DATASTORE_ENV).unwrap_or_default();
    let mut out = Vec::new();
    if only.is_empty() || only == "file" {
        out.push(Datastore::File);
    }
    if only.is_empty() || only == "kube" {
        match kube_bin() {
            Ok(_) => out.push(Datastore::Kube),
            Err(why) => {
                skip(&format!("{test} on --datastore kube"), &why);
            }
        }
    }
    out
}

/// The control plane's binaries: `$WEFT_KUBE_BIN`, checked.
pub fn kube_bin() -> Result<PathBuf, String> {
    let dir = std::env::var_os(KUBE_BIN_ENV)
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!("needs ${KUBE_BIN_ENV} (export {KUBE_BIN_ENV}=$(tests/kube/build.sh))")
        })?;
    for bin in weft_lab::control_plane::BINARIES {
        if !dir.join(bin).is_file() {
            return Err(format!(
                "${KUBE_BIN_ENV}={}: no {bin} there (run tests/kube/build.sh)",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

/// `opts` on `datastore`.
pub fn on(mut opts: UpOpts, datastore: Datastore) -> UpOpts {
    opts.datastore = datastore;
    opts.kube_bin_dir = match datastore {
        Datastore::Kube => kube_bin().ok(),
        Datastore::File => None,
    };
    opts
}

/// A step name for `datastore`: as it always was on `file`, with `kube/`
/// after the suite's prefix on `kube` (`netpol/x` → `netpol/kube/x`).
pub fn named(datastore: Datastore, name: &str) -> String {
    match (datastore, name.split_once('/')) {
        (Datastore::File, _) => name.to_string(),
        (Datastore::Kube, Some((suite, rest))) => format!("{suite}/kube/{rest}"),
        (Datastore::Kube, None) => format!("kube/{name}"),
    }
}

/// Runs one step of a test binary, timing it in the `test … ok` line.
pub fn step(name: &str, f: impl FnOnce()) {
    let begun = std::time::Instant::now();
    f();
    println!("test {name} ... ok ({:.1?})", begun.elapsed());
}

/// Three dual-stack nodes running weftd with the netpol model (nine pods,
/// three per node).
pub fn netpol_opts(bin: &Path, backend: &str, segments: usize) -> UpOpts {
    UpOpts {
        nodes: 3,
        segments,
        backend: backend.into(),
        families: vec![4, 6],
        model: ModelKind::Netpol,
        agent: true,
        bin_dir: bin.to_path_buf(),
        agent_timeout: Duration::from_secs(20),
        datastore: cluster::Datastore::File,
        kube_bin_dir: None,
    }
}

/// The real `weftd`: `$WEFT_WEFTD`, else the workspace build next to this
/// test binary (`target/<profile>/weftd`; `cargo build --bins` makes it).
pub fn weftd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(WEFTD_ENV) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test binary>
    let path = exe.parent()?.parent()?.join("weftd");
    path.is_file().then_some(path)
}

/// Removes the lab on drop, also when an assertion fails.
pub struct Lab {
    /// The lab's paths and names.
    pub layout: Layout,
    _state: TempDir,
}

impl Lab {
    /// A lab in a fresh temporary state directory (so a prefix of its own).
    pub fn new(tag: &str) -> Lab {
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
            eprintln!("lab test: cleanup of {}: {e}", self.layout.root().display());
        }
    }
}

/// A directory where `weft` and `weftctl` are this test binary, `scripts`
/// are executable files of the given text, and `links` point elsewhere.
pub fn bin_dir(scripts: &[(&str, &str)], links: &[(&str, &Path)]) -> TempDir {
    let dir = TempDir::new("lab-bin").unwrap();
    let me = std::env::current_exe().unwrap();
    for name in ["weft", "weftctl"] {
        symlink(&me, dir.path().join(name)).unwrap();
    }
    for (name, target) in links {
        symlink(target, dir.path().join(name)).unwrap();
    }
    for (name, script) in scripts {
        let path = dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// Two dual-stack nodes on one segment, VXLAN, no model.
pub fn opts(bin: &Path, agent: bool) -> UpOpts {
    UpOpts {
        nodes: 2,
        segments: 1,
        backend: "vxlan".into(),
        families: vec![4, 6],
        model: ModelKind::None,
        agent,
        bin_dir: bin.to_path_buf(),
        agent_timeout: Duration::from_secs(10),
        datastore: cluster::Datastore::File,
        kube_bin_dir: None,
    }
}

/// The lab's namespaces present on the machine.
pub fn own_netns(layout: &Layout) -> Vec<String> {
    netns::list(|n| layout.owns_netns(n)).unwrap()
}

/// A pod labelled `pod=<name>` serving TCP and UDP on 80.
pub fn pod(ns: &str, name: &str, node: &str) -> PodSpec {
    PodSpec {
        namespace: ns.into(),
        name: name.into(),
        node: Some(node.into()),
        labels: [("pod".to_string(), name.to_string())].into(),
        ports: vec![(Protocol::Tcp, 80), (Protocol::Udp, 80)],
    }
}

/// The addresses reserved in `node`'s IPAM store (what the plugin holds).
pub fn ipam_held(layout: &Layout, node: &str) -> Vec<IpAddr> {
    let dir = NodePaths::new(layout.node_dir(node)).ipam;
    let store = weft_ipam::Store::open(&dir, weft_lab::chain::NETWORK_NAME).unwrap();
    store
        .list()
        .unwrap()
        .into_iter()
        .flat_map(|r| r.ips)
        .collect()
}
