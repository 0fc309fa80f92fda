//! `lab.json`: the record of everything a lab created, written after each
//! step so that `lab down` can undo a crashed `lab up` too.

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::layout::Layout;

/// The whole lab.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabState {
    /// The namespace prefix (recorded so a reader can check it).
    pub prefix: String,
    /// The between-node backend weftd runs with.
    pub backend: String,
    /// Pod address families: `4`, `6` or both.
    pub families: Vec<u8>,
    /// Whether weftd runs on the nodes (`false` with `--no-agent`).
    pub agent: bool,
    /// Where the cluster lives: `file` (the file datastore; what labs
    /// recorded before this field existed) or `kube` (a real control plane,
    /// [`LabState::control_plane`]).
    #[serde(default = "file_datastore")]
    pub datastore: String,
    /// The control plane of a `kube` lab, once its namespace is recorded.
    #[serde(default)]
    pub control_plane: Option<ControlPlaneRecord>,
    /// Where the `weft` plugin, `weftd` and `weftctl` are.
    pub bin_dir: PathBuf,
    /// Underlay segments (index = segment number); with more than one,
    /// a router namespace joins them.
    pub segments: Vec<SegmentRecord>,
    /// The router namespace joining the segments, once created.
    #[serde(default)]
    pub router: Option<String>,
    /// The external client on segment 0 (not a cluster node), once created:
    /// where NodePorts are tested from outside.
    #[serde(default)]
    pub external: Option<ExternalRecord>,
    /// Nodes, in creation order.
    pub nodes: Vec<NodeRecord>,
    /// Pods, in creation order.
    pub pods: Vec<PodRecord>,
    /// Every namespace created so far, also those of half-built objects.
    pub netns: Vec<String>,
}

/// The lab's control plane: etcd, kube-apiserver and
/// kube-controller-manager in a namespace on underlay segment 0. Each
/// process is recorded as soon as it is started, before anything depends
/// on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneRecord {
    /// Its namespace (`<prefix>-cp`).
    pub netns: String,
    /// Its underlay addresses; the IPv4 one is the API endpoint.
    pub addresses: Vec<IpNet>,
    /// The API server's URL (`https://172.30.0.5:6443`).
    pub server: String,
    /// Where `etcd`, `kube-apiserver`, `kube-controller-manager` and
    /// `kubectl` are.
    pub kube_bin_dir: PathBuf,
    /// etcd, once started.
    #[serde(default)]
    pub etcd: Option<ProcRecord>,
    /// kube-apiserver, once started.
    #[serde(default)]
    pub apiserver: Option<ProcRecord>,
    /// kube-controller-manager, once started.
    #[serde(default)]
    pub controller_manager: Option<ProcRecord>,
}

impl ControlPlaneRecord {
    /// The recorded processes in the order they are stopped: dependents
    /// first, etcd last.
    pub fn processes(&self) -> impl Iterator<Item = ProcRecord> + '_ {
        [self.controller_manager, self.apiserver, self.etcd]
            .into_iter()
            .flatten()
    }
}

/// The datastore of a lab recorded without one.
fn file_datastore() -> String {
    "file".into()
}

/// The external client: a namespace on the underlay with an address of
/// segment 0 and no part in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRecord {
    /// Its namespace.
    pub netns: String,
    /// Its underlay addresses.
    pub addresses: Vec<IpNet>,
}

/// One L2 segment of the underlay: a bridge inside its own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentRecord {
    /// The namespace holding the bridge.
    pub netns: String,
    /// The bridge's name inside that namespace.
    pub bridge: String,
    /// The segment's IPv4 and IPv6 subnets.
    pub subnets: Vec<IpNet>,
    /// The router's addresses on this segment, the nodes' default
    /// gateways (empty while the lab has one segment and no router).
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// Node name (`node1`, ...).
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Index of its underlay segment in [`LabState::segments`].
    pub segment: usize,
    /// Its underlay addresses, with prefix length.
    pub addresses: Vec<IpNet>,
    /// Its pod CIDRs.
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<IpNet>,
    /// weftd's process, once started.
    pub weftd: Option<ProcRecord>,
    /// weftd's health endpoint inside the node namespace.
    pub health_addr: Option<String>,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Its network namespace.
    pub netns: String,
    /// The sandbox ID given to CNI.
    pub container_id: String,
    /// `CNI_ARGS` as given on ADD (DEL repeats them).
    pub cni_args: String,
    /// Addresses from the CNI result.
    pub ips: Vec<IpAddr>,
    /// Ports its server listens on (`tcp/80`, ...).
    pub ports: Vec<String>,
    /// The echo server, once started.
    pub server: Option<ProcRecord>,
}

/// A process the lab started: its PID and start time, so that a recycled
/// PID is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcRecord {
    /// Process ID.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

impl PodRecord {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The pod's address of `family` (4 or 6).
    pub fn address(&self, family: u8) -> Option<IpAddr> {
        self.ips.iter().copied().find(|ip| family_of(*ip) == family)
    }
}

/// 4 or 6.
pub fn family_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 4 } else { 6 }
}

impl LabState {
    /// Reads `lab.json`; `None` when there is no lab.
    pub fn load(layout: &Layout) -> Result<Option<LabState>> {
        let path = layout.state_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(format!("read {}", path.display()))(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(LabError::json(format!("decode {}", path.display())))
    }

    /// Reads `lab.json`, failing when there is no lab.
    pub fn require(layout: &Layout) -> Result<LabState> {
        LabState::load(layout)?.ok_or_else(|| {
            LabError::Invalid(format!(
                "no lab in {} (run `weftctl lab up` first)",
                layout.root().display()
            ))
        })
    }

    /// Writes `lab.json` atomically (temp file, fsync, rename).
    pub fn save(&self, layout: &Layout) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(LabError::json("encode lab.json"))?;
        write_atomic(&layout.state_file(), &bytes)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeRecord> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::Invalid(format!("no node {name:?} in the lab")))
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, key: &str) -> Result<&PodRecord> {
        self.pods
            .iter()
            .find(|p| p.key() == key)
            .ok_or_else(|| LabError::Invalid(format!("no pod {key} in the lab")))
    }
}

/// Writes `path` whole or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let op = || format!("write {}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io(op()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(LabError::io(op()))?;
    f.write_all(bytes).map_err(LabError::io(op()))?;
    f.sync_all().map_err(LabError::io(op()))?;
    std::fs::rename(&tmp, path).map_err(LabError::io(op()))
}

/// An exclusive lock on the lab, held while a command changes it: two
/// concurrent `lab pod add`s must not lose each other's record.
pub struct LabLock {
    _lock: Flock<File>,
}

impl LabLock {
    /// Takes the lock, waiting for another holder.
    pub fn acquire(layout: &Layout) -> Result<LabLock> {
        let path = layout.lock_file();
        let op = format!("lock {}", path.display());
        std::fs::create_dir_all(layout.root()).map_err(LabError::io(op.clone()))?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LabError::io(op.clone()))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| LabError::io(op)(e.into()))?;
        Ok(LabLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_recorded_before_datastores_is_a_file_lab() {
        let old = r#"{"prefix":"weftlab","backend":"vxlan","families":[4],"agent":true,
            "binDir":"/x","segments":[],"nodes":[],"pods":[],"netns":[]}"#;
        let state: LabState = serde_json::from_str(old).unwrap();
        assert_eq!(state.datastore, "file");
        assert_eq!(state.control_plane, None);
    }

    #[test]
    fn control_plane_stops_dependents_first() {
        let rec = |pid| Some(ProcRecord { pid, start_time: 1 });
        let cp = ControlPlaneRecord {
            netns: "weftlab-cp".into(),
            addresses: Vec::new(),
            server: "https://172.30.0.5:6443".into(),
            kube_bin_dir: "/k".into(),
            etcd: rec(1),
            apiserver: rec(2),
            controller_manager: rec(3),
        };
        let order: Vec<i32> = cp.processes().map(|p| p.pid).collect();
        assert_eq!(order, [3, 2, 1]);
    }
}
