//! The agent's loop over the `file` source: snapshot, decide, reconcile,
//! publish, report — on every datastore change and on a periodic resync.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use tracing::{info, warn};
use weft_agent::{
    AgentConfig, ClusterView, NetlinkKernel, PolicyState, ServiceState, desired, observe_local,
    reconcile, reconcile_policy, reconcile_services,
};
use weft_cni::plugin::node::NodeState;
use weft_datastore::{Datastore, Snapshot, Watcher};
use weft_ipam::Store;
use weft_policy::PolicyView;

use crate::health::Health;

/// Everything the loop needs besides the agent configuration.
pub struct LoopConfig {
    /// The datastore root (`file` source).
    pub datastore: PathBuf,
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
}

/// Runs until killed. The kernel state outlives the process on purpose:
/// a restarted agent adopts it (hitless restart), so there is no teardown.
pub fn run(cfg: AgentConfig, lc: LoopConfig, health: Arc<Health>) -> Result<()> {
    let ds = Datastore::open(&lc.datastore)
        .with_context(|| format!("open datastore {}", lc.datastore.display()))?;
    let mut watcher = Watcher::new(&lc.datastore).context("watch the datastore")?;
    let mut kernel = NetlinkKernel::new().context("open netlink")?;
    let mut state = PassState::default();
    loop {
        match pass(&cfg, &lc, &ds, &mut kernel, &mut state) {
            Ok(summary) => health.tick(true, summary),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "reconcile pass failed; retrying on the next change or resync"
                );
                health.tick(false, format!("{e:#}"));
                report(&ds, &cfg, None, Some(&format!("{e:#}")));
            }
        }
        // A failed pass retries sooner than a full resync.
        watcher
            .wait(lc.resync)
            .context("wait for datastore changes")?;
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
}

fn pass(
    cfg: &AgentConfig,
    lc: &LoopConfig,
    ds: &Datastore,
    kernel: &mut NetlinkKernel,
    state: &mut PassState,
) -> Result<String> {
    let snap = ds.snapshot().context("read the datastore")?;
    if snap.rejected != state.rejected {
        for (what, why) in snap.rejected.iter().filter(|r| !state.rejected.contains(r)) {
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
        state.rejected = snap.rejected.clone();
    }
    let view = view_of(&snap);
    let me = view
        .nodes
        .iter()
        .find(|n| n.name == cfg.node_name)
        .ok_or_else(|| {
            anyhow!(
                "node {} is not in the datastore (revision {})",
                cfg.node_name,
                snap.revision
            )
        })?;
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
        ds.update("Node", None, &cfg.node_name, |node| {
            let meta = &mut node["metadata"];
            if !meta["annotations"].is_object() {
                meta["annotations"] = json!({});
            }
            for (k, v) in &want.annotations {
                meta["annotations"][k] = Value::String(v.clone());
            }
        })
        .context("publish this node's annotations")?;
        info!(annotations = ?want.annotations, "published node annotations");
    }

    let changes = reconcile(kernel, &want).context("reconcile the kernel")?;
    if changes.changes() > 0 {
        info!(revision = snap.revision, report = ?changes, "applied changes");
    }
    // After routing: the policy table refers to the pods' host veths and
    // routes, which the plugin made; its absence never blocks routing.
    let policy = reconcile_policy(kernel, &mut state.policy, &policy_view(&snap), me)
        .context("reconcile NetworkPolicy")?;
    // Services after policy: both are needed for Service traffic, neither
    // blocks routing, and a policy decided after DNAT is already in place.
    let services = reconcile_services(
        kernel,
        &mut state.services,
        &snap.services,
        &snap.slices,
        me,
        &cfg.cluster_cidrs,
    )
    .context("reconcile Services")?;

    let state = NodeState {
        node: Some(cfg.node_name.clone()),
        pod_cidrs: me.pod_cidrs.clone(),
        mtu: Some(want.pod_mtu),
    };
    if NodeState::load(&lc.node_state_file).ok().as_ref() != Some(&state) {
        state
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

    report(ds, cfg, Some(snap.revision), None);
    Ok(format!(
        "revision {} applied; policy: {} policies over {} local pods ({:?}); services: {} ({:?})",
        snap.revision,
        policy.policies,
        policy.local_pods,
        policy.action,
        services.services,
        services.action
    ))
}

/// The agent's status in the datastore: the revision it applied (what
/// `weftctl lab sync` waits for), or the error of its last pass.
fn report(ds: &Datastore, cfg: &AgentConfig, revision: Option<u64>, error: Option<&str>) {
    let mut status = json!({
        "node": cfg.node_name,
        "backend": cfg.backend.as_str(),
        "ready": error.is_none(),
        "time": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    if let Some(r) = revision {
        status["revision"] = json!(r);
    } else if let Ok(Some(prev)) = ds.read_status(&cfg.node_name) {
        // Keep the last applied revision while failing.
        status["revision"] = prev["revision"].clone();
    }
    if let Some(e) = error {
        status["error"] = json!(e);
    }
    if let Err(e) = ds.write_status(&cfg.node_name, &status) {
        warn!(error = %e, "could not write the agent status");
    }
}

fn view_of(snap: &Snapshot) -> ClusterView {
    ClusterView {
        revision: snap.revision,
        nodes: snap.nodes.clone(),
        pods: snap.pods.clone(),
    }
}

/// What the policy compiler sees of a snapshot: rejected policies are not
/// in it, so a bad policy is in force nowhere and disturbs no other.
fn policy_view(snap: &Snapshot) -> PolicyView {
    PolicyView {
        namespaces: snap.namespaces.clone(),
        pods: snap.pods.clone(),
        policies: snap.policies.clone(),
        nodes: snap.nodes.clone(),
    }
}
