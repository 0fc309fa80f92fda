//! Where the plugin learns the node's pod CIDRs, MTU and address store.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::wire::config::NetConf;
use crate::wire::error::{CniError, TRY_AGAIN_LATER};

/// Where weftd writes the node state unless configured otherwise. Under /run:
/// it describes this boot's agent and must not outlive it.
pub const DEFAULT_NODE_STATE_FILE: &str = "/run/weft/node.json";

/// Where address reservations live unless `dataDir` says otherwise. Under
/// /run (tmpfs): a reservation lives exactly as long as the pod's sandbox,
/// which never outlives the boot, so the reboot that empties /run also ends
/// every pod that held an address. On disk, each reboot would leave every
/// address reserved until a sweep (host-local's known leak). Plugin, agent
/// and runtime restarts keep it (see README, "Where state lives").
pub const DEFAULT_DATA_DIR: &str = "/run/weft/ipam";

/// The pod interface MTU when neither the config nor the node state has one.
pub const DEFAULT_MTU: u32 = 1500;

/// What weftd publishes for the plugin on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node's pod CIDRs (`Node.spec.podCIDRs`).
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<IpNet>,
    /// The pod MTU: the underlay MTU minus the backend's overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl NodeState {
    /// Reads a node-state file. A missing or unreadable file is code 11: the
    /// agent has not (yet) published this node, so the runtime should retry.
    pub fn load(path: &Path) -> Result<NodeState, CniError> {
        let later = |why: String| {
            CniError::new(
                TRY_AGAIN_LATER,
                format!(
                    "node state {} is not available; is weftd running on this node?",
                    path.display()
                ),
            )
            .with_details(why)
        };
        let bytes = std::fs::read(path).map_err(|e| later(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| later(format!("cannot decode it: {e}")))
    }

    /// Writes a node-state file atomically (temp file, fsync, rename), so the
    /// plugin never reads a half-written one.
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(self).expect("serializes");
        weft_fsutil::write_synced(&tmp, &bytes, 0o644, weft_fsutil::Create::Truncate)
            .map_err(|e| std::io::Error::new(e.source.kind(), e.to_string()))?;
        std::fs::rename(&tmp, path)
    }
}

/// The node facts one invocation works with.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// The pod CIDRs to allocate from.
    pub pod_cidrs: Vec<IpNet>,
    /// The pod interface MTU.
    pub mtu: u32,
}

/// Resolves the pod CIDRs and MTU: the config's own values win, then the
/// node-state file.
pub fn resolve(conf: &NetConf) -> Result<NodeView, CniError> {
    let state = match &conf.pod_cidrs {
        Some(_) => None,
        None => Some(NodeState::load(&node_state_path(conf))?),
    };
    let pod_cidrs = match (&conf.pod_cidrs, &state) {
        (Some(c), _) => c.clone(),
        (None, Some(s)) => s.pod_cidrs.clone(),
        (None, None) => unreachable!("state loaded when the config has no podCIDRs"),
    };
    let mtu = conf
        .mtu
        .or(state.as_ref().and_then(|s| s.mtu))
        .unwrap_or(DEFAULT_MTU);
    Ok(NodeView { pod_cidrs, mtu })
}

/// The node-state file this config names, or the default.
pub fn node_state_path(conf: &NetConf) -> PathBuf {
    conf.node_state_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_NODE_STATE_FILE))
}

/// The address store directory root this config names, or the default.
pub fn data_dir(conf: &NetConf) -> PathBuf {
    conf.data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}
