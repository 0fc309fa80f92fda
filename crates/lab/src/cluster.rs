//! `lab up` and `lab down`: building the whole cluster and removing it.
//!
//! `up` records every namespace and process in `lab.json` before creating
//! it, and on any failure runs `down`, so a failed `up` leaves nothing; a
//! crashed one leaves a record that `down` completes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use weft_cni::plugin::node::NodeState;

use crate::agents;
use crate::chain;
use crate::control_plane;
use crate::error::{LabError, Result};
use crate::kubelet;
use crate::layout::{Layout, NodePaths};
use crate::model::{self, ModelKind};
use crate::netns;
use crate::objects;
use crate::procs;
use crate::services;
use crate::state::{LabLock, LabState, NodeRecord, ProcRecord, write_atomic};
use crate::store::Store;
use crate::underlay::{self, MAX_NODES, MAX_SEGMENTS, UNDERLAY_MTU};

/// Where the lab's cluster lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Datastore {
    /// The file datastore under the lab's directory; the lab plays the
    /// API server and its controllers.
    #[default]
    File,
    /// A real control plane (etcd, kube-apiserver,
    /// kube-controller-manager) in the lab's `<prefix>-cp` namespace.
    Kube,
}

impl Datastore {
    /// Its name in `lab.json` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Datastore::File => "file",
            Datastore::Kube => "kube",
        }
    }
}

/// What `lab up` builds.
#[derive(Debug, Clone)]
pub struct UpOpts {
    /// Number of nodes.
    pub nodes: usize,
    /// Number of underlay segments (1 to [`MAX_SEGMENTS`]); nodes
    /// alternate between them and, with more than one, a router
    /// namespace joins them.
    pub segments: usize,
    /// weftd's `--backend`.
    pub backend: String,
    /// Pod address families (4, 6 or both).
    pub families: Vec<u8>,
    /// The namespaces and pods to create.
    pub model: ModelKind,
    /// Start weftd on each node; without it the lab writes each node-state
    /// file itself (a test and debugging aid: pods then only reach pods on
    /// their own node).
    pub agent: bool,
    /// The directory with `weft`, `weftd` and `weftctl`.
    pub bin_dir: PathBuf,
    /// How long each weftd gets to publish its node state (and with
    /// [`Datastore::Kube`], kube-controller-manager to assign the nodes'
    /// pod CIDRs).
    pub agent_timeout: Duration,
    /// Where the cluster lives.
    pub datastore: Datastore,
    /// With [`Datastore::Kube`]: the directory with the control plane's
    /// binaries (`None`: `$WEFT_KUBE_BIN`).
    pub kube_bin_dir: Option<PathBuf>,
}

/// Builds the lab; on failure removes whatever was built.
pub fn up(layout: &Layout, opts: &UpOpts) -> Result<LabState> {
    if opts.nodes == 0 || opts.nodes > MAX_NODES {
        return Err(LabError::Invalid(format!(
            "--nodes must be 1 to {MAX_NODES}"
        )));
    }
    if opts.segments == 0 || opts.segments > MAX_SEGMENTS {
        return Err(LabError::Invalid(format!(
            "--segments must be 1 to {MAX_SEGMENTS}"
        )));
    }
    if opts.families.is_empty() {
        return Err(LabError::Invalid("no address family chosen".into()));
    }
    check_binaries(opts)?;
    let kube_bin_dir = match opts.datastore {
        Datastore::Kube => Some(control_plane::resolve_bin_dir(
            opts.kube_bin_dir.as_deref(),
        )?),
        Datastore::File => None,
    };
    let lock = LabLock::acquire(layout)?;
    if LabState::load(layout)?.is_some() {
        return Err(LabError::Invalid(format!(
            "a lab is already up in {} (run `weftctl lab down` first)",
            layout.root().display()
        )));
    }
    let leftovers = netns::list(|n| layout.owns_netns(n))?;
    if !leftovers.is_empty() {
        return Err(LabError::Invalid(format!(
            "namespaces of an earlier lab still exist ({}); run `weftctl lab down` first",
            leftovers.join(", ")
        )));
    }
    let mut state = LabState {
        prefix: layout.prefix().to_string(),
        backend: opts.backend.clone(),
        families: opts.families.clone(),
        agent: opts.agent,
        bin_dir: opts.bin_dir.clone(),
        datastore: opts.datastore.as_str().into(),
        ..LabState::default()
    };
    state.save(layout)?;
    match build(layout, &mut state, opts, kube_bin_dir.as_deref()) {
        Ok(()) => Ok(state),
        Err(e) => {
            drop(lock);
            Err(match down(layout) {
                Ok(()) => e,
                Err(c) => LabError::failed(
                    "lab up",
                    format!("{e}; and removing the half-built lab: {c}"),
                ),
            })
        }
    }
}

fn check_binaries(opts: &UpOpts) -> Result<()> {
    let mut need = vec!["weft"];
    if opts.agent {
        need.push("weftd");
    }
    if opts.model != ModelKind::None {
        need.push("weftctl");
    }
    for bin in need {
        let path = opts.bin_dir.join(bin);
        if !path.is_file() {
            return Err(LabError::Invalid(format!(
                "{} not found (build the workspace's binaries, or pass --bin-dir)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn build(
    layout: &Layout,
    state: &mut LabState,
    opts: &UpOpts,
    kube_bin_dir: Option<&Path>,
) -> Result<()> {
    for s in 0..opts.segments {
        underlay::create_segment(layout, state, s)?;
    }
    if opts.segments > 1 {
        underlay::create_router(layout, state)?;
    }
    // Right after the underlay (the router included, so nodes on every
    // segment reach it), before anything registers with the API.
    if let Some(dir) = kube_bin_dir {
        control_plane::start(layout, state, dir)?;
    }
    underlay::create_external(layout, state)?;
    let mut node_objects = Vec::new();
    for i in 1..=opts.nodes {
        let node = underlay::create_node(layout, state, i)?;
        let paths = NodePaths::new(layout.node_dir(&node.name));
        let list = chain::conflist(&paths.node_state, &paths.ipam);
        write_atomic(
            &paths.conflist,
            &serde_json::to_vec_pretty(&list).map_err(LabError::json("encode conflist"))?,
        )?;
        node_objects.push(node_object(&node, &opts.families));
    }
    // Opened once the cluster's store exists (the control plane above,
    // in kube mode).
    let store = Store::open(layout)?;
    if store.is_kube() {
        register_kube_nodes(layout, state, &store, opts.agent_timeout)?;
    } else {
        store.apply(node_objects, "the Node objects")?;
    }

    if opts.agent {
        agents::start_all(layout, state, opts.agent_timeout)?;
    } else {
        for node in &state.nodes {
            let paths = NodePaths::new(layout.node_dir(&node.name));
            NodeState {
                node: Some(node.name.clone()),
                pod_cidrs: node.pod_cidrs.clone(),
                mtu: Some(UNDERLAY_MTU),
            }
            .store(&paths.node_state)
            .map_err(LabError::io(format!(
                "write the node state of {}",
                node.name
            )))?;
        }
    }

    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    let model = model::build(opts.model, &names);
    if !model.namespaces.is_empty() {
        let docs = model
            .namespaces
            .iter()
            .map(|(name, labels)| objects::namespace(name, labels))
            .collect();
        store.apply(docs, "the model's namespaces")?;
    }
    for pod in &model.pods {
        kubelet::add_pod(layout, state, &store, pod)?;
    }
    services::reconcile_endpoints(&store)?;
    Ok(())
}

/// The Node object of `node` as the lab registers it: its pod CIDRs and
/// its underlay addresses of the lab's pod `families` as InternalIPs (no
/// annotations: the node's agent publishes those).
pub fn node_object(node: &NodeRecord, families: &[u8]) -> serde_json::Value {
    let internal: Vec<_> = node
        .addresses
        .iter()
        .map(|a| a.addr())
        .filter(|ip| families.contains(&crate::state::family_of(*ip)))
        .collect();
    objects::node(&node.name, &node.pod_cidrs, &internal)
}

/// Registers `node` as its kubelet and kube-controller-manager would: its
/// labels, its pod CIDRs (when it has them) and its underlay addresses of
/// the lab's pod `families` as InternalIPs. On a real API server the
/// addresses go through the status subresource (an apply cannot write
/// status), and a node without pod CIDRs gets them from the controller.
pub fn register_node(store: &Store, node: &NodeRecord, families: &[u8]) -> Result<()> {
    let mut object = node_object(node, families);
    if !store.is_kube() {
        store.apply(vec![object], &format!("Node {}", node.name))?;
        return Ok(());
    }
    let status = object
        .as_object_mut()
        .and_then(|o| o.remove("status"))
        .unwrap_or_default();
    if node.pod_cidrs.is_empty() {
        object.as_object_mut().map(|o| o.remove("spec"));
    }
    store.apply(vec![object], &format!("register Node {}", node.name))?;
    store.set_status("Node", None, &node.name, &status)?;
    Ok(())
}

/// Registers every node with the API server and waits (up to `timeout`
/// in all) until kube-controller-manager has assigned each its pod CIDRs,
/// which are recorded where file mode records its own assignment.
fn register_kube_nodes(
    layout: &Layout,
    state: &mut LabState,
    store: &Store,
    timeout: Duration,
) -> Result<()> {
    for node in &mut state.nodes {
        // The controller assigns them: what file mode would have chosen
        // must not leak into the Node.
        node.pod_cidrs.clear();
        register_node(store, node, &state.families)?;
    }
    state.save(layout)?;
    let deadline = Instant::now() + timeout;
    for idx in 0..state.nodes.len() {
        let name = state.nodes[idx].name.clone();
        let cidrs = loop {
            let node = store.get("Node", None, &name)?;
            let cidrs = node.as_ref().map(assigned_pod_cidrs).transpose()?;
            match cidrs {
                Some(c) if c.len() == state.families.len() => break c,
                _ if Instant::now() >= deadline => {
                    return Err(LabError::Timeout(format!(
                        "node {name}: kube-controller-manager assigned no pod CIDRs of \
                         families {:?} within {timeout:?} (has {}); see its log under {}",
                        state.families,
                        cidrs.map_or("no Node".into(), |c| format!("{c:?}")),
                        layout.control_plane_dir().display()
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        state.nodes[idx].pod_cidrs = cidrs;
        state.save(layout)?;
    }
    Ok(())
}

/// `spec.podCIDRs` of a Node object.
fn assigned_pod_cidrs(node: &serde_json::Value) -> Result<Vec<IpNet>> {
    node["spec"]["podCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = c.as_str().unwrap_or_default();
            text.parse().map_err(|e| {
                LabError::Invalid(format!(
                    "Node {}: pod CIDR {text:?}: {e}",
                    node["metadata"]["name"]
                ))
            })
        })
        .collect()
}

/// Removes the lab: stops its servers and agents, deletes every namespace
/// it created (recorded or carrying its prefix), removes its state. Safe to
/// run twice, and after a crashed `up`.
pub fn down(layout: &Layout) -> Result<()> {
    let _lock = match layout.root().exists() {
        true => Some(LabLock::acquire(layout)?),
        false => None,
    };
    let mut errors: Vec<String> = Vec::new();
    let state = match LabState::load(layout) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            // A torn lab.json must not keep the namespaces alive: the
            // prefix scan below still finds them.
            errors.push(e.to_string());
            LabState::default()
        }
    };
    // The control plane last: agents may still be talking to it.
    let recorded = state
        .pods
        .iter()
        .filter_map(|p| p.server)
        .chain(state.nodes.iter().filter_map(|n| n.weftd))
        .chain(state.control_plane.iter().flat_map(|cp| cp.processes()));
    for rec in recorded {
        if let Err(e) = procs::stop(&rec, procs::STOP_GRACE) {
            errors.push(e.to_string());
        }
    }
    let mut names = netns::list(|n| layout.owns_netns(n))?;
    names.extend(state.netns.iter().filter(|n| layout.owns_netns(n)).cloned());
    names.sort();
    names.dedup();
    // Whatever still runs inside the lab's namespaces was started there by
    // the lab (a process whose record was lost in a crash): end it too, or
    // it would keep a namespace alive after its name is gone.
    for name in names.iter().filter(|n| netns::exists(n)) {
        for pid in netns::pids(name).unwrap_or_default() {
            if let Some(start_time) = procs::start_time(pid) {
                if let Err(e) = procs::stop(&ProcRecord { pid, start_time }, procs::STOP_GRACE) {
                    errors.push(e.to_string());
                }
            }
        }
    }
    for name in &names {
        if let Err(e) = netns::delete(name) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        remove_state(layout, &mut errors);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LabError::failed("lab down", errors.join("; ")))
    }
}

/// Removes what the lab keeps in its state directory, entry by entry (the
/// directory may be one a user named, so nothing else in it is touched),
/// then the directory itself if that leaves it empty.
fn remove_state(layout: &Layout, errors: &mut Vec<String>) {
    let root = layout.root();
    let dirs = ["datastore", "nodes", "pods"].map(|d| root.join(d));
    for p in dirs.into_iter().chain([layout.control_plane_dir()]) {
        if p.exists() {
            if let Err(e) = std::fs::remove_dir_all(&p) {
                errors.push(format!("remove {}: {e}", p.display()));
            }
        }
    }
    for file in [layout.state_file(), layout.lock_file()] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("remove {}: {e}", file.display())),
        }
    }
    // Not empty means a user's own files: keep them and the directory.
    let _ = std::fs::remove_dir(root);
}
