//! The command-line contract of `weftctl lab`, `weftctl apply`, `weftctl
//! delete` and `weftctl label`: clap types and the functions that run them.
//! weftctl only parses and calls these.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use weft_model::Protocol;

use crate::agents;
use crate::cluster::{self, Datastore, UpOpts};
use crate::control_plane::{self, Component};
use crate::kubelet::{self, PodSpec};
use crate::layout::Layout;
use crate::model::ModelKind;
use crate::netns;
use crate::objects::{self, LabelEdit};
use crate::probe::{self, ProbeQuery};
use crate::probe_services;
use crate::report;
use crate::services;
use crate::state::{LabLock, LabState};
use crate::store::Store;

/// Prints a formatted line on stdout (see [`emit`]).
macro_rules! out {
    ($($arg:tt)*) => {
        emit_line(&format!($($arg)*))?
    };
}

/// `weftctl lab …`: the state directory and the subcommand.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// The lab's state directory; its namespaces are named after it
    /// (`weftlab-…` for the default, `weftlab<hash>-…` for others).
    #[arg(long, global = true, env = "WEFT_LAB_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: LabCmd,
}

/// The lab's subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Build a cluster in network namespaces: underlay, nodes running
    /// weftd, the model's namespaces and pods.
    Up(UpArgs),
    /// Remove everything the lab created (idempotent; also after a crashed
    /// `up`).
    Down,
    /// Nodes and pods, with weftd's liveness and applied revision.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Wait until every node's agent has applied the datastore's current
    /// revision.
    Sync {
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
    /// Start and stop pods (the lab's kubelet).
    #[command(subcommand)]
    Pod(PodCmd),
    /// Create namespaces.
    #[command(subcommand)]
    Ns(NsCmd),
    /// Manage the nodes' agents (weftd).
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Operate the control plane of a `--datastore kube` lab.
    #[command(subcommand)]
    ControlPlane(ControlPlaneCmd),
    /// Run the control plane's kubectl (inside its namespace, as the
    /// cluster admin) on a `--datastore kube` lab; exits with its code.
    Kubectl {
        /// kubectl's arguments (after `--`).
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// Run a command inside a pod's network namespace; exits with its code.
    Exec {
        /// The pod, `NAMESPACE/NAME`.
        pod: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Probe connectivity from pods to pods (self included).
    Probe(ProbeArgs),
    /// The echo server every pod runs (started by the lab inside the pod's
    /// namespace; runs until killed).
    Serve {
        /// Ports to serve, e.g. `tcp/80,udp/80`.
        #[arg(long, default_value = "tcp/80,udp/80")]
        ports: String,
        /// Also answer on TCP and UDP port 9376 with this name and the
        /// client's address (which endpoint of a Service answered).
        #[arg(long, value_name = "NAME")]
        whoami: Option<String>,
    },
}

/// `lab up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Number of underlay segments; nodes alternate between them and a
    /// router namespace joins them (the `auto` backend then uses host-gw
    /// within a segment and VXLAN across).
    #[arg(long, default_value_t = 1)]
    pub segments: usize,
    /// The between-node backend weftd uses (weftd's `--backend`, passed
    /// through as weftd spells it).
    #[arg(long, default_value = "vxlan", value_parser = ["vxlan", "host-gw", "auto"])]
    pub backend: String,
    /// IPv6-only pods.
    #[arg(long, conflicts_with = "dual_stack")]
    pub ipv6: bool,
    /// IPv4 and IPv6 pods.
    #[arg(long)]
    pub dual_stack: bool,
    /// Which namespaces and pods to create.
    #[arg(long, value_enum, default_value_t = ModelKind::Demo)]
    pub model: ModelKind,
    /// Test and debugging aid: start no weftd; the lab writes each node's
    /// node-state file itself, so pods reach only pods on their own node.
    #[arg(long)]
    pub no_agent: bool,
    /// Directory with `weft`, `weftd` and `weftctl` (default: this
    /// program's directory).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// How long each weftd gets to publish its node state.
    #[arg(long, default_value_t = 30_000)]
    pub agent_timeout_ms: u64,
    /// Where the cluster lives: the file datastore, or a real control
    /// plane (etcd, kube-apiserver, kube-controller-manager) in the lab.
    #[arg(long, value_enum, default_value_t = Datastore::File)]
    pub datastore: Datastore,
    /// With `--datastore kube`: the directory holding `etcd`,
    /// `kube-apiserver`, `kube-controller-manager` and `kubectl`
    /// (`tests/kube/build.sh` builds them and prints it; default
    /// `$WEFT_KUBE_BIN`).
    #[arg(long, value_name = "DIR")]
    pub kube_bin_dir: Option<PathBuf>,
}

/// `lab pod …`.
#[derive(Debug, Subcommand)]
pub enum PodCmd {
    /// Start a pod: Pod object, sandbox namespace, CNI ADD through the
    /// chain, echo server, status.
    Add {
        /// `NAMESPACE/NAME`.
        pod: String,
        /// The node (default: the one with the fewest pods).
        #[arg(long)]
        node: Option<String>,
        /// Labels, `k=v,k2=v2`.
        #[arg(long, default_value = "")]
        labels: String,
        /// Ports the pod serves, `tcp/80,udp/80,…`.
        #[arg(long, default_value = "tcp/80,udp/80")]
        ports: String,
    },
    /// Stop a pod: server, CNI DEL, namespace, Pod object.
    Del {
        /// `NAMESPACE/NAME`.
        pod: String,
    },
}

/// `lab ns …`.
#[derive(Debug, Subcommand)]
pub enum NsCmd {
    /// Create (or relabel) a namespace.
    Add {
        /// Its name.
        name: String,
        /// Labels, `k=v,k2=v2`.
        #[arg(long, default_value = "")]
        labels: String,
    },
}

/// `lab agent …`.
#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Restart a node's weftd exactly as `lab up` started it and wait
    /// until it is ready; the kernel state (and traffic) stays meanwhile.
    Restart {
        /// The node.
        node: String,
        /// SIGKILL instead of SIGTERM: the agent gets no chance to clean up.
        #[arg(long)]
        kill: bool,
        /// How long the new agent gets to become ready.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
}

/// `lab control-plane …`.
#[derive(Debug, Subcommand)]
pub enum ControlPlaneCmd {
    /// Stop one process of the control plane, leave it down for a while,
    /// start it exactly as `lab up` did and wait until it serves; the
    /// agents keep their kernel state meanwhile and reconnect.
    Restart {
        /// Which process.
        #[arg(value_enum)]
        component: Component,
        /// SIGKILL instead of SIGTERM: a crash.
        #[arg(long)]
        kill: bool,
        /// How long it stays down, in milliseconds.
        #[arg(long, default_value_t = 0)]
        down_ms: u64,
    },
}

/// `lab probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Print `{"results":[…]}` instead of a matrix.
    #[arg(long)]
    pub json: bool,
    /// Clients: pods `NAMESPACE/NAME`, `ext` (the external client) or
    /// `node/NAME` (repeatable; default all pods).
    #[arg(long)]
    pub from: Vec<String>,
    /// Servers: pods, `svc/NAMESPACE/NAME` (the cluster IPs on `--port`) or
    /// `nodeport/NAMESPACE/NAME` (the NodePort of Service port `--port` on
    /// every node) (repeatable; default all pods).
    #[arg(long)]
    pub to: Vec<String>,
    /// Destination port.
    #[arg(long, default_value_t = 80)]
    pub port: u16,
    /// TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// 4 or 6 (default: every family of the lab).
    #[arg(long, value_parser = clap::value_parser!(u8).range(4..=6))]
    pub family: Option<u8>,
    /// Per-probe budget in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    weft_probe::parse_protocol(s).ok_or_else(|| format!("{s:?}: expected TCP, UDP or SCTP"))
}

/// `weftctl apply -f FILE` and `weftctl delete -f FILE`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifest file (YAML or JSON, several documents allowed); `-` reads
    /// stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// The lab's state directory (its datastore is used).
    #[arg(long, env = "WEFT_LAB_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `weftctl label …`.
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// What to label.
    #[command(subcommand)]
    pub target: LabelTarget,
    /// The lab's state directory (its datastore is used).
    #[arg(long, global = true, env = "WEFT_LAB_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// The object to label.
#[derive(Debug, Subcommand)]
pub enum LabelTarget {
    /// A namespace: `label ns NAME k=v… k-…`.
    Ns {
        /// The namespace.
        name: String,
        /// `k=v` sets (overwriting), `k-` removes.
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// A pod: `label pod NAMESPACE/NAME k=v… k-…`.
    Pod {
        /// `NAMESPACE/NAME`.
        pod: String,
        /// `k=v` sets (overwriting), `k-` removes.
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

/// How long `lab up` and `lab pod add` wait for the agents.
const AGENT_SYNC: Duration = Duration::from_secs(30);

/// Returns once every agent has applied the datastore's revision (what
/// `lab sync` waits for): a pod the agents have not seen yet is isolated by
/// them (its policy may not be in place), so `what` returns a lab whose
/// pods can talk. A timeout leaves the lab up, for diagnosis.
fn wait_for_agents(layout: &Layout, what: &str) -> Result<()> {
    let rev = report::sync(layout, AGENT_SYNC).with_context(|| {
        format!(
            "{what}: waiting for the agents (the lab stays up: `weftctl lab status`, their logs)"
        )
    })?;
    out!("agents in sync at {rev}");
    Ok(())
}

/// Runs a `weftctl lab` command; returns the process exit code.
pub fn run_lab(args: LabArgs) -> Result<i32> {
    let layout = Layout::resolve(args.state_dir.as_deref());
    match args.cmd {
        LabCmd::Up(up) => {
            let families = match (up.ipv6, up.dual_stack) {
                (true, _) => vec![6],
                (false, true) => vec![4, 6],
                (false, false) => vec![4],
            };
            let bin_dir = match up.bin_dir {
                Some(d) => d,
                None => own_dir()?,
            };
            let opts = UpOpts {
                nodes: up.nodes,
                segments: up.segments,
                backend: up.backend,
                families,
                model: up.model,
                agent: !up.no_agent,
                bin_dir,
                agent_timeout: Duration::from_millis(up.agent_timeout_ms),
                datastore: up.datastore,
                kube_bin_dir: up.kube_bin_dir,
            };
            let state = cluster::up(&layout, &opts)?;
            out!(
                "lab up: {} nodes, {} pods, datastore {} (state in {})",
                state.nodes.len(),
                state.pods.len(),
                state.datastore,
                layout.root().display()
            );
            if state.agent {
                wait_for_agents(&layout, "lab up")?;
            }
        }
        LabCmd::Down => {
            cluster::down(&layout)?;
            out!("lab down: removed");
        }
        LabCmd::Status { json } => {
            let s = report::status(&layout)?;
            if json {
                emit_line(&serde_json::to_string_pretty(&s)?)?;
            } else {
                emit(&report::render(&s))?;
            }
        }
        LabCmd::Sync { timeout_ms } => {
            let rev = report::sync(&layout, Duration::from_millis(timeout_ms))?;
            out!("in sync at {rev}");
        }
        LabCmd::Pod(PodCmd::Add {
            pod,
            node,
            labels,
            ports,
        }) => {
            let (namespace, name) = split_pod(&pod)?;
            let spec = PodSpec {
                namespace,
                name,
                node,
                labels: objects::parse_labels(&labels)?,
                ports: if ports.trim().is_empty() {
                    Vec::new()
                } else {
                    weft_probe::parse_port_spec(&ports)?
                },
            };
            let lock = LabLock::acquire(&layout)?;
            let mut state = LabState::require(&layout)?;
            let store = Store::open(&layout)?;
            let rec = kubelet::add_pod(&layout, &mut state, &store, &spec)?;
            services::reconcile_endpoints(&store)?;
            drop(lock);
            let ips: Vec<String> = rec.ips.iter().map(ToString::to_string).collect();
            out!("pod {} on {}: {}", rec.key(), rec.node, ips.join(", "));
            if state.agent {
                wait_for_agents(&layout, "lab pod add")?;
            }
        }
        LabCmd::Pod(PodCmd::Del { pod }) => {
            split_pod(&pod)?;
            let _lock = LabLock::acquire(&layout)?;
            let mut state = LabState::require(&layout)?;
            let store = Store::open(&layout)?;
            kubelet::del_pod(&layout, &mut state, &store, &pod)?;
            services::reconcile_endpoints(&store)?;
            out!("pod {pod} deleted");
        }
        LabCmd::Ns(NsCmd::Add { name, labels }) => {
            LabState::require(&layout)?;
            let store = Store::open(&layout)?;
            let ns = objects::namespace(&name, &objects::parse_labels(&labels)?);
            let rev = store.apply(vec![ns], &format!("Namespace {name}"))?;
            out!("namespace {name} ({rev})");
        }
        LabCmd::Agent(AgentCmd::Restart {
            node,
            kill,
            timeout_ms,
        }) => {
            let r = agents::restart(&layout, &node, kill, Duration::from_millis(timeout_ms))?;
            let how = if kill { "killed" } else { "stopped" };
            match r.stopped {
                Some(old) => out!("node {node}: weftd pid {} {how}", old.pid),
                None => out!("node {node}: no weftd was running"),
            }
            out!(
                "node {node}: weftd pid {} ready after {} ms (log {})",
                r.started.pid,
                r.ready_after.as_millis(),
                r.log.display()
            );
        }
        LabCmd::ControlPlane(ControlPlaneCmd::Restart {
            component,
            kill,
            down_ms,
        }) => {
            let down = Duration::from_millis(down_ms);
            out!(
                "{}",
                control_plane::restart(&layout, component, kill, down)?
            );
        }
        LabCmd::Kubectl { args } => {
            let state = LabState::require(&layout)?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            return kubectl(&layout, &state, &args);
        }
        LabCmd::Exec { pod, command } => {
            let state = LabState::require(&layout)?;
            return exec(&state, &pod, &command);
        }
        LabCmd::Probe(p) => {
            let state = LabState::require(&layout)?;
            let query = ProbeQuery {
                from: p.from,
                to: p.to,
                port: p.port,
                protocol: p.protocol,
                families: p.family.into_iter().collect(),
                timeout: Duration::from_millis(p.timeout_ms),
            };
            if query.families.iter().any(|f| *f != 4 && *f != 6) {
                bail!("--family must be 4 or 6");
            }
            let records = if probe_services::is_extended(&query) {
                probe_services::probe(&state, &Store::open(&layout)?, &query)?
            } else {
                probe::probe(&state, &query)?
            };
            if p.json {
                emit_line(&probe::to_json(&records).to_string())?;
            } else {
                emit(&probe::render(&records))?;
            }
        }
        LabCmd::Serve { ports, whoami } => {
            let ports = weft_probe::parse_port_spec(&ports)?;
            if let Some(name) = whoami {
                services::whoami::spawn_server(name)?;
            }
            weft_probe::serve(&weft_probe::ServeOpts::new(ports)).context("lab serve")?;
        }
    }
    Ok(0)
}

/// Runs `weftctl apply -f`.
pub fn run_apply(args: ApplyArgs) -> Result<i32> {
    let (store, text, source) = manifest(&args)?;
    let layout = Layout::resolve(args.state_dir.as_deref());
    let families = LabState::require(&layout)?.families;
    let mut docs =
        weft_datastore::parse_manifest(&text).with_context(|| format!("read {source}"))?;
    services::allocate_services(&store, &mut docs, &families)?;
    let rev = store.apply(docs, &source)?;
    let rev = services::reconcile_endpoints(&store)?.unwrap_or(rev);
    out!("applied {source} ({rev})");
    Ok(0)
}

/// Runs `weftctl delete -f`.
pub fn run_delete(args: ApplyArgs) -> Result<i32> {
    let (store, text, source) = manifest(&args)?;
    let deleted = store.delete_text(&text, &source)?;
    let deleted = services::reconcile_endpoints(&store)?.or(deleted);
    match deleted {
        Some(rev) => out!("deleted what {source} names ({rev})"),
        None => out!("nothing that {source} names exists"),
    }
    Ok(0)
}

/// Runs `weftctl label`.
pub fn run_label(args: LabelArgs) -> Result<i32> {
    let layout = Layout::resolve(args.state_dir.as_deref());
    LabState::require(&layout)?;
    let store = Store::open(&layout)?;
    let (kind, namespace, name, labels) = match &args.target {
        LabelTarget::Ns { name, labels } => ("Namespace", None, name.clone(), labels),
        LabelTarget::Pod { pod, labels } => {
            let (ns, name) = split_pod(pod)?;
            ("Pod", Some(ns), name, labels)
        }
    };
    let edits = labels
        .iter()
        .map(|l| LabelEdit::parse(l))
        .collect::<Result<Vec<_>, _>>()?;
    let rev = store.label(kind, namespace.as_deref(), &name, &edits)?;
    let rev = services::reconcile_endpoints(&store)?.unwrap_or(rev);
    out!("{} {name} labeled ({rev})", kind.to_ascii_lowercase());
    Ok(0)
}

fn manifest(args: &ApplyArgs) -> Result<(Store, String, String)> {
    let layout = Layout::resolve(args.state_dir.as_deref());
    LabState::require(&layout)?;
    let store = Store::open(&layout)?;
    let (text, source) = if args.file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("read stdin")?;
        (text, "stdin".to_string())
    } else {
        let text = std::fs::read_to_string(&args.file)
            .with_context(|| format!("read {}", args.file.display()))?;
        (text, args.file.display().to_string())
    };
    Ok((store, text, source))
}

/// Runs the control plane's kubectl with `args`, passing its output and
/// exit code through.
fn kubectl(layout: &Layout, state: &LabState, args: &[&str]) -> Result<i32> {
    if state.datastore != crate::store::KUBE {
        bail!(
            "the lab runs on the {} datastore: kubectl needs `lab up --datastore kube`",
            state.datastore
        );
    }
    let out = control_plane::kubectl(layout, state, args, None)?;
    emit(&String::from_utf8_lossy(&out.stdout))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(exit_code(out.status))
}

/// A child's exit code; a signal `n` reads as `128 + n`, as in a shell.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs `command` in the pod's namespace with this terminal's stdio.
fn exec(state: &LabState, pod: &str, command: &[String]) -> Result<i32> {
    let rec = state.pod(pod)?;
    let (program, args) = command.split_first().context("no command given")?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    let mut child = netns::spawn_in(&rec.netns, &mut cmd)?;
    let status = child
        .wait()
        .with_context(|| format!("wait for {program}"))?;
    Ok(exit_code(status))
}

/// Writes `text` to stdout. A reader that went away (`| head`) is not an
/// error worth a panic: the command's work is done, the output unwanted.
pub(crate) fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("write to stdout"),
        _ => Ok(()),
    }
}

fn emit_line(text: &str) -> Result<()> {
    emit(&format!("{text}\n"))
}

pub(crate) fn split_pod(key: &str) -> Result<(String, String)> {
    match key.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => bail!("{key:?}: expected NAMESPACE/NAME"),
    }
}

/// The directory of the running program, where the workspace's other
/// binaries are built and installed.
fn own_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("find this program's path")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this program's path has no directory")
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
