//! The agent's loop over a [`Source`]: snapshot, decide, reconcile,
//! publish, report — on every change of the cluster and on a periodic
//! resync.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use tracing::{info, warn};
use weft_agent::{
    AgentConfig, ClusterView, NetlinkKernel, PolicyState, ServiceState, desired, observe_local,
    reconcile, reconcile_policy, reconcile_services,
};
use weft_cni::plugin::node::NodeState;
use weft_datastore::Snapshot;
use weft_ipam::Store;
use weft_policy::PolicyView;

use crate::fastpath::FastPathState;
use crate::health::Health;
use crate::source::{Applied, Source, Versioned};
use crate::status;

/// Everything the loop needs besides the agent configuration.
pub struct LoopConfig {
    /// Where to write the node state for the plugin.
    pub node_state_file: PathBuf,
    /// The plugin's IPAM `dataDir`, for the address sweep.
    pub ipam_dir: PathBuf,
    /// The CNI network name (the IPAM store's directory).
    pub network: String,
    /// Periodic resync even without changes.
    pub resync: Duration,
    /// Reservations younger than this are never swept.
    pub sweep_grace: Duration,
    /// Where to write the outcome of every pass, if anywhere.
    pub status_file: Option<PathBuf>,
    /// Run the BPF fast path ([`crate::fastpath`]).
    pub fast_path: bool,
}

/// Runs until killed. The kernel state outlives the process on purpose:
/// a restarted agent adopts it (hitless restart), so there is no teardown.
pub fn run(
    cfg: AgentConfig,
    lc: LoopConfig,
    health: Arc<Health>,
    source: &mut dyn Source,
) -> Result<()> {
    let mut kernel = NetlinkKernel::new().context("open netlink")?;
    let mut state = PassState::default();
    if lc.fast_path {
        // Without CAP_BPF (or a kernel that refuses the programs) the node
        // runs on the kernel path alone, which is complete; programs an
        // earlier agent left would run on maps nobody updates, so they go.
        match FastPathState::new() {
            Ok(fp) => state.fast_path = Some(fp),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "BPF fast path unavailable; forwarding on the kernel path only"
                );
                FastPathState::detach_all()?;
            }
        }
    } else {
        FastPathState::detach_all()?;
    }
    loop {
        let error = match pass(&cfg, &lc, source, &mut kernel, &mut state) {
            Ok(summary) => {
                health.tick(true, summary);
                None
            }
            Err(e) => {
                let error = format!("{e:#}");
                warn!(
                    error,
                    "reconcile pass failed; retrying on the next change or resync"
                );
                health.tick(false, error.clone());
                Some(error)
            }
        };
        source.report(&cfg, state.applied.as_ref(), error.as_deref());
        if let Some(path) = &lc.status_file {
            if let Err(e) = status::write(
                path,
                &cfg.node_name,
                state.applied.as_ref(),
                error.as_deref(),
            ) {
                warn!(error = format!("{e:#}"), "could not write the status file");
            }
        }
        // A failed pass retries sooner than a full resync.
        source.wait(lc.resync)?;
    }
}

/// What the loop keeps from one pass to the next.
#[derive(Default)]
struct PassState {
    /// The policy table this agent last applied (deltas go against it).
    policy: PolicyState,
    /// The proxy table and UDP endpoints this agent last applied.
    services: ServiceState,
    /// The rejected objects last warned about: each is named once, not on
    /// every pass.
    rejected: Vec<(String, String)>,
    /// What the last successful pass applied.
    applied: Option<Applied>,
    /// The BPF fast path, when on.
    fast_path: Option<FastPathState>,
}

fn pass(
    cfg: &AgentConfig,
    lc: &LoopConfig,
    source: &mut dyn Source,
    kernel: &mut NetlinkKernel,
    state: &mut PassState,
) -> Result<String> {
    let Versioned {
        snapshot: snap,
        digest,
    } = source.snapshot()?;
    // The snapshot's vectors move into the views: with thousands of pods a
    // copy per view per pass is most of a pass's memory.
    let Snapshot {
        revision,
        nodes,
        namespaces,
        pods,
        policies,
        services,
        slices,
        rejected,
        ..
    } = snap;
    if rejected != state.rejected {
        warn_rejected(&rejected, &state.rejected);
        state.rejected = rejected;
    }
    let mut view = ClusterView {
        revision,
        nodes,
        pods,
    };
    // A copy of one node, so the views can lend their vectors out below.
    let me = view
        .nodes
        .iter()
        .find(|n| n.name == cfg.node_name)
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "node {} is not in the cluster (revision {revision})",
                cfg.node_name,
            )
        })?;
    let me = &me;
    if me.pod_cidrs.is_empty() {
        return Err(anyhow!("node {} has no spec.podCIDRs yet", cfg.node_name));
    }
    let local = observe_local(kernel, me).context("observe the underlay")?;
    let want = desired(&view, cfg, &local);

    // What peers need of this node goes on its Node object; an unchanged
    // value writes nothing (and wakes nobody).
    let missing = want
        .annotations
        .iter()
        .any(|(k, v)| me.annotations.get(k) != Some(v));
    if missing {
        source.publish_annotations(&cfg.node_name, &want.annotations)?;
        info!(annotations = ?want.annotations, "published node annotations");
    }

    let changes = reconcile(kernel, &want).context("reconcile the kernel")?;
    if changes.changes() > 0 {
        info!(revision, report = ?changes, "applied changes");
    }
    // After routing: the policy table refers to the pods' host veths and
    // routes, which the plugin made; its absence never blocks routing.
    // Rejected policies are not in the view, so a bad policy is in force
    // nowhere and disturbs no other.
    let mut policy_view = PolicyView {
        namespaces,
        pods: Vec::new(),
        policies,
        nodes: Vec::new(),
    };
    let policy = lend_pods_and_nodes(&mut view, &mut policy_view, |policy_view| {
        reconcile_policy(kernel, &mut state.policy, policy_view, me)
    })
    .context("reconcile NetworkPolicy")?;
    // Services after policy: both are needed for Service traffic, neither
    // blocks routing, and a policy decided after DNAT is already in place.
    let services = reconcile_services(
        kernel,
        &mut state.services,
        &services,
        &slices,
        me,
        &cfg.cluster_cidrs,
    )
    .context("reconcile Services")?;
    // Last: it follows the policy pass's view of which pods are open, and
    // everything it speeds up also works without it.
    let fast = match &mut state.fast_path {
        Some(fp) => Some(
            fp.sync(&want, state.policy.open_pods())
                .context("reconcile the fast path")?,
        ),
        None => None,
    };

    let node_state = NodeState {
        node: Some(cfg.node_name.clone()),
        pod_cidrs: me.pod_cidrs.clone(),
        mtu: Some(want.pod_mtu),
    };
    if NodeState::load(&lc.node_state_file).ok().as_ref() != Some(&node_state) {
        node_state
            .store(&lc.node_state_file)
            .with_context(|| format!("write node state {}", lc.node_state_file.display()))?;
        info!(path = %lc.node_state_file.display(), mtu = want.pod_mtu, "wrote node state");
    }

    if lc.ipam_dir.join(&lc.network).is_dir() {
        let store = Store::open(&lc.ipam_dir, &lc.network).context("open the IPAM store")?;
        let released = weft_agent::sweep(
            &store,
            &view,
            &cfg.node_name,
            lc.sweep_grace,
            SystemTime::now(),
        )
        .context("sweep addresses")?;
        for r in released {
            info!(container = r.attachment.container_id, ips = ?r.ips, "released the address of a pod that is gone");
        }
    }

    state.applied = Some(Applied { revision, digest });
    Ok(format!(
        "revision {} applied; policy: {} policies over {} local pods ({:?}); services: {} ({:?}); fast path: {}",
        revision,
        policy.policies,
        policy.local_pods,
        policy.action,
        services.services,
        services.action,
        match fast {
            Some(f) => format!("{} open pods, {} remote CIDRs", f.open_pods, f.remote_cidrs),
            None => "off".into(),
        }
    ))
}

/// Names each newly rejected object once, by what its rejection means.
fn warn_rejected(rejected: &[(String, String)], already: &[(String, String)]) {
    for (what, why) in rejected.iter().filter(|r| !already.contains(r)) {
        if what.starts_with("Service/") || what.starts_with("EndpointSlice/") {
            warn!(
                object = what,
                error = why,
                "rejected Service object: not proxied; every other Service stays in force"
            );
        } else if what.starts_with("NetworkPolicy/") {
            warn!(
                policy = what,
                error = why,
                "rejected NetworkPolicy: not enforced; every other policy stays in force"
            );
        } else {
            warn!(
                object = what,
                error = why,
                "ignoring an object that does not convert"
            );
        }
    }
}

/// Runs `f` on `policy_view` holding the cluster view's pods and nodes,
/// which are moved, not copied, and back in `view` when this returns.
fn lend_pods_and_nodes<T>(
    view: &mut ClusterView,
    policy_view: &mut PolicyView,
    f: impl FnOnce(&PolicyView) -> T,
) -> T {
    std::mem::swap(&mut view.pods, &mut policy_view.pods);
    std::mem::swap(&mut view.nodes, &mut policy_view.nodes);
    let out = f(policy_view);
    std::mem::swap(&mut view.pods, &mut policy_view.pods);
    std::mem::swap(&mut view.nodes, &mut policy_view.nodes);
    out
}
