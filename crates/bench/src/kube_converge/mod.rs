//! `weftctl bench kube-converge` (issue 6): convergence through a real
//! kube-apiserver, and weftd's memory with thousands of objects stored
//! there, against the file datastore in the same run.
//!
//! Per datastore, one 2-node lab (model `none`, host-gw by default):
//!
//! 1. The scene ([`events::scene`]): a real server pod on node2 and a
//!    policy admitting `role=client` pods to it; `nft monitor` starts in
//!    node2's namespace.
//! 2. Event (a), `events` times: a client Pod on node1 (an object only)
//!    gets its status (a fresh address, Ready); timed from the status
//!    write's return to node2's `inet weft-policy` gaining the address.
//! 3. Event (b), `events` times: a policy selecting the server with a port
//!    of its own; timed from the create's return to the port in the table.
//! 4. The events' objects are deleted, node1's weftd memory read; then
//!    `pods` Pods and `policies` policies over `load_nodes` Node objects
//!    are stored ([`load`]), `lab sync` waits for every agent, and the
//!    memory is read again (with kube-apiserver's and etcd's for context).
//!
//! Both labs live under the locked `/run/weft/bench-kube-converge` and are
//! removed at the end, also on failure and on SIGINT/SIGTERM/SIGHUP.

pub mod bulk;
pub mod events;
pub mod lab;
pub mod load;
pub mod memory;
pub mod monitor;
pub mod report;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use weft_lab::cluster::Datastore;

use crate::labs::{RunDir, own_dir};
use crate::stats::round3;
use crate::supervise::{Handle, Supervisor};
use lab::{LOADED_SYNC_TIMEOUT, Lab};
use memory::Rss;
use monitor::NftMonitor;
use report::{DatastoreRun, MemoryPhase, Params};

/// Options for [`run`].
#[derive(Debug, Clone)]
pub struct KubeConvergeOpts {
    /// Events of each kind per datastore.
    pub events: usize,
    /// Pods stored for the memory phase.
    pub pods: usize,
    /// NetworkPolicies stored for the memory phase.
    pub policies: usize,
    /// Node objects the stored pods are spread over.
    pub load_nodes: usize,
    /// Writes in flight while loading the API server.
    pub in_flight: usize,
    /// weftd's backend.
    pub backend: String,
    /// The datastores to measure, in order (the file baseline first by
    /// default).
    pub datastores: Vec<Datastore>,
    /// The directory with `weft`, `weftd` and `weftctl`.
    pub bin_dir: PathBuf,
    /// The control plane's binaries (`None`: `$WEFT_KUBE_BIN`).
    pub kube_bin_dir: Option<PathBuf>,
}

impl Default for KubeConvergeOpts {
    fn default() -> Self {
        KubeConvergeOpts {
            events: 100,
            pods: 5000,
            policies: 1000,
            load_nodes: 50,
            in_flight: 16,
            backend: "host-gw".into(),
            datastores: vec![Datastore::File, Datastore::Kube],
            bin_dir: own_dir(),
            kube_bin_dir: None,
        }
    }
}

/// Runs the benchmark and returns its report as JSON.
///
/// Needs root. Call it from the main thread before it starts other threads
/// (see [`Supervisor`]).
pub fn run(opts: &KubeConvergeOpts) -> Result<Value> {
    if opts.events == 0 || opts.events > events::MAX_EVENTS {
        bail!("--events must be 1 to {}", events::MAX_EVENTS);
    }
    if opts.in_flight == 0 || opts.datastores.is_empty() {
        bail!("--in-flight and --datastores must not be empty or zero");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the kube-converge benchmark builds labs in network namespaces: run it as root");
    }
    let supervisor = Supervisor::start()?;
    let run_dir = RunDir::acquire("kube-converge")?;
    let plan = load::Plan {
        pods: opts.pods,
        policies: opts.policies,
        nodes: opts.load_nodes,
        in_flight: opts.in_flight,
    };
    let mut runs = Vec::new();
    for &ds in &opts.datastores {
        let run = one(&run_dir, opts, ds, &plan, supervisor.handle())
            .with_context(|| format!("the {} datastore's lab", ds.as_str()))?;
        runs.push(run);
    }
    let params = Params {
        backend: opts.backend.clone(),
        events: opts.events,
        pods: opts.pods,
        policies: opts.policies,
        load_nodes: opts.load_nodes,
        in_flight: opts.in_flight,
    };
    Ok(report::report(&params, &runs))
}

/// Everything on one datastore's lab; the lab comes down on return.
fn one(
    run_dir: &RunDir,
    opts: &KubeConvergeOpts,
    ds: Datastore,
    plan: &load::Plan,
    sup: Handle,
) -> Result<DatastoreRun> {
    eprintln!("kube-converge: {} lab up", ds.as_str());
    let (mut lab, lab_up) = Lab::up(
        run_dir,
        ds,
        &opts.backend,
        &opts.bin_dir,
        opts.kube_bin_dir.clone(),
        sup,
    )?;
    events::scene(&mut lab)?;
    let monitor = NftMonitor::start(&lab.node_netns(1)?)?;
    eprintln!(
        "kube-converge: {}: {} pod status events",
        ds.as_str(),
        opts.events
    );
    let pod_status = events::pod_status_events(&lab, &monitor, opts.events)?;
    eprintln!(
        "kube-converge: {}: {} policy events",
        ds.as_str(),
        opts.events
    );
    let policy_create = events::policy_events(&lab, &monitor, opts.events)?;
    drop(monitor);
    events::remove_events(&lab.store, opts.events, opts.in_flight)?;
    lab.sync()
        .context("wait for the agents after removing the events' objects")?;

    let weftd = lab.weftd(0)?;
    let cp = lab.control_plane();
    let weftd_before = Rss::of("node1's weftd", &weftd)?;
    let cp_before = cp
        .map(|(a, e)| -> Result<_> { Ok([Rss::of("kube-apiserver", &a)?, Rss::of("etcd", &e)?]) })
        .transpose()?;
    eprintln!(
        "kube-converge: {}: storing {} pods and {} policies",
        ds.as_str(),
        plan.pods,
        plan.policies
    );
    let loaded = load::load(&lab, plan)?;
    lab.check_interrupted()?;
    let synced = Instant::now();
    lab.sync_within(LOADED_SYNC_TIMEOUT)
        .context("wait for the agents to sync the loaded cluster")?;
    let sync = synced.elapsed();
    let weftd_after = Rss::of("node1's weftd", &weftd)?;
    let cp_after = cp
        .map(|(a, e)| -> Result<_> { Ok([Rss::of("kube-apiserver", &a)?, Rss::of("etcd", &e)?]) })
        .transpose()?;
    let both = |i: usize| match (cp_before, cp_after) {
        (Some(b), Some(a)) => Some([b[i], a[i]]),
        _ => None,
    };
    let memory = MemoryPhase {
        weftd_before,
        weftd_after,
        apiserver: both(0),
        etcd: both(1),
        load_s: round3(loaded.as_secs_f64()),
        sync_s: round3(sync.as_secs_f64()),
    };
    lab.down()?;
    Ok(DatastoreRun {
        datastore: ds.as_str(),
        lab_up,
        pod_status,
        policy_create,
        memory,
    })
}
