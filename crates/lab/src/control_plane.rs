//! A real Kubernetes control plane for `lab up --datastore kube`: etcd,
//! kube-apiserver and kube-controller-manager (built from the upstream Go
//! modules by `tests/kube/build.sh`) in the namespace `<prefix>-cp` on
//! underlay segment 0, reachable from every node at
//! `https://172.30.0.5:6443`.
//!
//! Everything they need lives under `<lab root>/control-plane/`: the PKI
//! ([`crate::certs`]), etcd's data, the logs and the kubeconfigs. Each
//! process is recorded in `lab.json` as soon as it is started, so `lab
//! down` stops it also after a failed or crashed `up`. The root namespace
//! cannot reach the API (nothing of the lab exists there): [`kubectl`]
//! runs the built kubectl inside the control plane's namespace.
//!
//! Once the API is ready, the lab applies `deploy/weft.yaml` (the same
//! manifests a user installs; embedded at build time), so the agents run
//! with the token of its ServiceAccount ([`agent_kubeconfig`]) and prove
//! its RBAC is enough.

mod flags;
mod restart;

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

pub use flags::{API_PORT, CONTROLLERS, SA_ISSUER, apiserver_sans, service_cidrs};
pub use restart::{Restarted, restart};

use crate::certs::Pki;
use crate::error::{LabError, Result};
use crate::layout::{ControlPlanePaths, Layout};
use crate::netns;
use crate::procs;
use crate::state::{ControlPlaneRecord, LabState, ProcRecord};
use crate::underlay;

/// The environment variable naming the directory with the control
/// plane's binaries (what `tests/kube/build.sh` prints).
pub const KUBE_BIN_ENV: &str = "WEFT_KUBE_BIN";

/// The binaries a `kube` lab runs.
pub const BINARIES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
];

/// weft's install manifests (`deploy/weft.yaml`), applied to every `kube`
/// lab.
pub const MANIFEST: &str = include_str!("../../../deploy/weft.yaml");

/// The namespace of weft's ServiceAccount in [`MANIFEST`].
pub const AGENT_NAMESPACE: &str = "weft-system";

/// weft's ServiceAccount in [`MANIFEST`], whose token the agents use.
pub const AGENT_SERVICE_ACCOUNT: &str = "weft";

/// How long an agent's token is valid (a lab lives for hours).
pub const AGENT_TOKEN_DURATION: &str = "24h";

/// How long the control plane gets to become ready at `lab up`: the
/// first start bootstraps RBAC and priority classes, slow on a busy
/// two-core machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one readiness request may take.
const PROBE_TIMEOUT: &str = "--request-timeout=5s";

/// One process of the control plane (in start order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    /// etcd, the API server's storage.
    Etcd,
    /// kube-apiserver.
    #[value(name = "apiserver")]
    ApiServer,
    /// kube-controller-manager.
    ControllerManager,
}

impl Component {
    /// The program's name in the binaries' directory (also its log's).
    pub fn binary(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
        }
    }

    /// Its command line: a pure function of the lab's paths and address
    /// families, so `up` and every restart run it identically.
    fn args(self, paths: &ControlPlanePaths, families: &[u8]) -> Vec<String> {
        let pki = Pki::new(paths.pki.clone());
        match self {
            Component::Etcd => flags::etcd(paths),
            Component::ApiServer => flags::apiserver(paths, &pki, families),
            Component::ControllerManager => flags::controller_manager(paths, &pki, families),
        }
    }

    /// Its process as recorded in `cp`.
    fn recorded(self, cp: &ControlPlaneRecord) -> Option<ProcRecord> {
        match self {
            Component::Etcd => cp.etcd,
            Component::ApiServer => cp.apiserver,
            Component::ControllerManager => cp.controller_manager,
        }
    }

    fn slot(self, cp: &mut ControlPlaneRecord) -> &mut Option<ProcRecord> {
        match self {
            Component::Etcd => &mut cp.etcd,
            Component::ApiServer => &mut cp.apiserver,
            Component::ControllerManager => &mut cp.controller_manager,
        }
    }
}

/// A process started by this `lab up`: its handle notices an early exit.
struct Started {
    component: Component,
    child: Child,
    log: PathBuf,
}

/// The API server's URL (its IPv4 underlay address; the namespace has an
/// IPv4 address in every lab).
pub fn server_url() -> String {
    let v4 = underlay::control_plane_addresses()[0].addr();
    format!("https://{v4}:{API_PORT}")
}

/// The directory with the control plane's binaries: `given`, else
/// `$WEFT_KUBE_BIN`; each of [`BINARIES`] must be in it.
pub fn resolve_bin_dir(given: Option<&Path>) -> Result<PathBuf> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => match std::env::var_os(KUBE_BIN_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                return Err(LabError::Invalid(format!(
                    "--datastore kube needs the control plane's binaries: pass --kube-bin-dir \
                     or set ${KUBE_BIN_ENV} to the directory tests/kube/build.sh prints"
                )));
            }
        },
    };
    for bin in BINARIES {
        if !dir.join(bin).is_file() {
            return Err(LabError::Invalid(format!(
                "{} not found (tests/kube/build.sh builds it)",
                dir.join(bin).display()
            )));
        }
    }
    Ok(dir)
}

/// The cluster admin's kubeconfig (`system:masters`, server
/// [`server_url`]); usable from inside the lab's namespaces.
pub fn admin_kubeconfig(layout: &Layout) -> PathBuf {
    ControlPlanePaths::new(layout).admin_kubeconfig
}

/// Starts the control plane of a `kube` lab (after the underlay, before
/// the nodes): namespace, PKI, kubeconfigs, etcd, kube-apiserver (waiting
/// for `/readyz`), kube-controller-manager, then applies [`MANIFEST`] and
/// waits for the ServiceAccount controller. Everything is recorded in
/// `state` before it exists; on failure the caller runs `lab down`.
pub(crate) fn start(layout: &Layout, state: &mut LabState, kube_bin_dir: &Path) -> Result<()> {
    let paths = ControlPlanePaths::new(layout);
    state.control_plane = Some(ControlPlaneRecord {
        netns: layout.control_plane_netns(),
        addresses: underlay::control_plane_addresses(),
        server: server_url(),
        kube_bin_dir: kube_bin_dir.to_path_buf(),
        etcd: None,
        apiserver: None,
        controller_manager: None,
    });
    state.save(layout)?;
    underlay::create_control_plane_netns(layout, state)?;
    for dir in [&paths.dir, &paths.logs, &paths.etcd_data] {
        // 0700: etcd insists on it for its data, and the directory holds
        // the CA's key.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(LabError::io(format!("create {}", dir.display())))?;
    }
    let pki = Pki::new(paths.pki.clone());
    pki.generate(&apiserver_sans(&state.families))?;
    let clients = [
        (&paths.admin_kubeconfig, "weft-lab-admin", pki.admin()),
        (
            &paths.controller_manager_kubeconfig,
            "system:kube-controller-manager",
            pki.controller_manager(),
        ),
    ];
    for (path, user, pair) in clients {
        let credentials = json!({"client-certificate": pair.cert, "client-key": pair.key});
        write_kubeconfig(path, &pki, user, credentials)?;
    }

    let deadline = Instant::now() + READY_TIMEOUT;
    let mut started = vec![spawn(layout, state, Component::Etcd)?];
    started.push(spawn(layout, state, Component::ApiServer)?);
    let op = "start the control plane";
    wait_for(&mut started, deadline, op, "kube-apiserver /readyz", || {
        ready(layout, state, Component::ApiServer)
    })?;
    started.push(spawn(layout, state, Component::ControllerManager)?);
    let applied = kubectl(
        layout,
        state,
        &["apply", "-f", "-"],
        Some(MANIFEST.as_bytes()),
    )?;
    check("apply deploy/weft.yaml", applied)?;
    // The ServiceAccount controller gives every namespace its `default`
    // ServiceAccount, without which no Pod is admitted: the controller
    // manager is working once `default/default` exists.
    wait_for(
        &mut started,
        deadline,
        op,
        "the default ServiceAccount",
        || {
            let args = [
                PROBE_TIMEOUT,
                "get",
                "serviceaccount",
                "default",
                "-o",
                "name",
            ];
            answer(kubectl(layout, state, &args, None)?)
        },
    )
}

/// Starts `component` with its arguments ([`Component::args`]) in the
/// control plane's namespace and records it (saved before returning).
fn spawn(layout: &Layout, state: &mut LabState, component: Component) -> Result<Started> {
    let paths = ControlPlanePaths::new(layout);
    let args = component.args(&paths, &state.families);
    let cp = record_mut(state)?;
    let log = paths.log(component.binary());
    let program = cp.kube_bin_dir.join(component.binary());
    let (child, rec) = procs::spawn_detached(&cp.netns, &program, &args, &log)?;
    *component.slot(cp) = Some(rec);
    state.save(layout)?;
    Ok(Started {
        component,
        child,
        log,
    })
}

/// Whether `component` serves: the API server answers `/readyz`; etcd
/// and the controller manager listen on their ports (their own readiness
/// shows in the API server's, see [`restart`]). `Err` text says what is
/// missing.
fn ready(
    layout: &Layout,
    state: &LabState,
    component: Component,
) -> Result<std::result::Result<(), String>> {
    let port = match component {
        Component::ApiServer => {
            let args = [PROBE_TIMEOUT, "get", "--raw", "/readyz"];
            return answer(kubectl(layout, state, &args, None)?);
        }
        Component::Etcd => flags::ETCD_CLIENT_PORT,
        Component::ControllerManager => flags::CONTROLLER_MANAGER_PORT,
    };
    let rec = component
        .recorded(record(state)?)
        .ok_or_else(|| LabError::Invalid(format!("{} was never started", component.binary())))?;
    Ok(if procs::socket_bound(rec.pid, "tcp", port, Some("0A")) {
        Ok(())
    } else {
        Err(format!("nothing listens on port {port} yet"))
    })
}

/// Polls `probe` until it answers `Ok(())`; fails (as `op`) when a started
/// process exits or `deadline` passes, with the last answer and every
/// log's tail.
fn wait_for(
    started: &mut [Started],
    deadline: Instant,
    op: &str,
    what: &str,
    mut probe: impl FnMut() -> Result<std::result::Result<(), String>>,
) -> Result<()> {
    loop {
        let last = match probe()? {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        let exited = started.iter_mut().find_map(|s| {
            let status = s.child.try_wait().ok().flatten()?;
            Some(format!("{} exited ({status})", s.component.binary()))
        });
        if exited.is_some() || Instant::now() >= deadline {
            let why = exited.unwrap_or_else(|| format!("not within {READY_TIMEOUT:?}"));
            let tails: Vec<String> = started
                .iter()
                .map(|s| format!("--- {}:\n{}", s.log.display(), procs::tail_file(&s.log, 15)))
                .collect();
            return Err(LabError::Timeout(format!(
                "{op}: waiting for {what}: {why}; last answer: {}\n{}",
                last.trim(),
                tails.join("\n")
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A kubectl run as a poll answer: success, or what it said.
fn answer(out: Output) -> Result<std::result::Result<(), String>> {
    Ok(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })
}

/// `out` when kubectl succeeded; else an error for `op` with its stderr.
pub fn check(op: &str, out: Output) -> Result<Output> {
    if out.status.success() {
        return Ok(out);
    }
    Err(LabError::failed(
        op,
        format!(
            "kubectl {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}

/// The control plane of a `kube` lab.
pub fn record(state: &LabState) -> Result<&ControlPlaneRecord> {
    state.control_plane.as_ref().ok_or_else(|| {
        LabError::Invalid(format!(
            "the lab runs on the {} datastore: it has no control plane \
             (lab up --datastore kube)",
            state.datastore
        ))
    })
}

fn record_mut(state: &mut LabState) -> Result<&mut ControlPlaneRecord> {
    record(state)?;
    Ok(state.control_plane.as_mut().expect("checked above"))
}

/// Runs the built kubectl with `args` inside the control plane's
/// namespace as the cluster admin, `stdin` fed to it (for `-f -`).
/// Returns its output whatever its exit status (`auth can-i` answers
/// "no" with 1); see [`check`]. Errors only when it cannot run.
pub fn kubectl(
    layout: &Layout,
    state: &LabState,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Output> {
    kubectl_as(layout, state, &admin_kubeconfig(layout), args, stdin)
}

/// [`kubectl`] with another kubeconfig (e.g. an agent's from
/// [`agent_kubeconfig`], to see the cluster as weftd does).
pub fn kubectl_as(
    layout: &Layout,
    state: &LabState,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Output> {
    let cp = record(state)?;
    let paths = ControlPlanePaths::new(layout);
    let what = format!("kubectl {}", args.join(" "));
    let mut cmd = Command::new(cp.kube_bin_dir.join("kubectl"));
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        // Its discovery cache stays in the lab (removed by `lab down`),
        // not in ~/.kube.
        .arg(format!("--cache-dir={}", paths.kubectl_cache.display()))
        .args(args)
        .stdin(stdin.map_or_else(Stdio::null, |_| Stdio::piped()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = netns::spawn_in(&cp.netns, &mut cmd)?;
    let input = child.stdin.take();
    std::thread::scope(|s| {
        if let (Some(bytes), Some(mut pipe)) = (stdin, input) {
            // A kubectl that exits before reading everything says why on
            // stderr; the broken pipe adds nothing.
            s.spawn(move || drop(pipe.write_all(bytes)));
        }
        child.wait_with_output().map_err(LabError::io(what))
    })
}

/// Writes `<node dir>/kubeconfig` for `node`'s agent: the API server and
/// a token of weft's ServiceAccount (`weft-system/weft`, bound to the
/// manifests' ClusterRole), valid [`AGENT_TOKEN_DURATION`].
pub fn agent_kubeconfig(layout: &Layout, state: &LabState, node: &str) -> Result<PathBuf> {
    state.node(node)?;
    let what = format!("create a token of {AGENT_NAMESPACE}/{AGENT_SERVICE_ACCOUNT} for {node}");
    let duration = format!("--duration={AGENT_TOKEN_DURATION}");
    let args = [
        "create",
        "token",
        AGENT_SERVICE_ACCOUNT,
        "--namespace",
        AGENT_NAMESPACE,
        &duration,
    ];
    let out = check(&what, kubectl(layout, state, &args, None)?)?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if token.is_empty() {
        return Err(LabError::failed(what, "kubectl printed no token"));
    }
    let path = layout.node_dir(node).join("kubeconfig");
    let pki = Pki::new(ControlPlanePaths::new(layout).pki);
    write_kubeconfig(
        &path,
        &pki,
        &format!("system:serviceaccount:{AGENT_NAMESPACE}:{AGENT_SERVICE_ACCOUNT}"),
        json!({ "token": token }),
    )?;
    Ok(path)
}

/// The kubeconfig document for `user` with `credentials` (a `user`
/// entry's fields), trusting the lab's CA. JSON is YAML, so kubectl and
/// kube-rs read it as any kubeconfig.
fn kubeconfig(ca: &Path, user: &str, credentials: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "weft-lab",
            "cluster": {"server": server_url(), "certificate-authority": ca},
        }],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "weft-lab", "context": {"cluster": "weft-lab", "user": user}}],
        "current-context": "weft-lab",
    })
}

/// Writes a kubeconfig atomically and readable by its owner only: it
/// grants its user's rights.
fn write_kubeconfig(
    path: &Path,
    pki: &Pki,
    user: &str,
    credentials: serde_json::Value,
) -> Result<()> {
    let op = format!("write {}", path.display());
    let doc = kubeconfig(&pki.ca().cert, user, credentials);
    let bytes = serde_json::to_vec_pretty(&doc).map_err(LabError::json(op.clone()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io(op.clone()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    weft_fsutil::write_synced(&tmp, &bytes, 0o600, weft_fsutil::Create::Truncate)
        .map_err(|e| LabError::failed(&op, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(LabError::io(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_points_at_the_lab_api() {
        let doc = kubeconfig(Path::new("/l/ca.crt"), "u", json!({"token": "t"}));
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"],
            "https://172.30.0.5:6443"
        );
        assert_eq!(
            doc["clusters"][0]["cluster"]["certificate-authority"],
            "/l/ca.crt"
        );
        assert_eq!(doc["users"][0]["user"]["token"], "t");
        assert_eq!(doc["contexts"][0]["context"]["user"], "u");
    }

    #[test]
    fn the_manifest_holds_the_agents_service_account() {
        assert!(MANIFEST.contains("kind: ServiceAccount"));
        assert!(MANIFEST.contains(&format!("name: {AGENT_SERVICE_ACCOUNT}")));
        assert!(MANIFEST.contains(&format!("namespace: {AGENT_NAMESPACE}")));
    }

    #[test]
    fn missing_binaries_are_named() {
        let tmp = weft_testkit::TempDir::new("kube-bin").unwrap();
        let err = resolve_bin_dir(Some(tmp.path())).unwrap_err().to_string();
        assert!(err.contains("etcd") && err.contains("build.sh"), "{err}");
    }
}
