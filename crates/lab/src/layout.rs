//! Where a lab keeps its state and how it names its namespaces.
//!
//! Everything is derived from the state directory, so that two labs with
//! different directories (parallel tests) never share a namespace name: the
//! default directory gives the prefix `weftlab`, any other directory
//! `weftlab<6 hex digits of a hash of its path>`.

use std::path::{Path, PathBuf};

/// The default state directory (tmpfs: a lab does not outlive a reboot,
/// and neither do its namespaces).
pub const DEFAULT_STATE_DIR: &str = "/run/weft/lab";

/// Environment variable naming another state directory.
pub const STATE_DIR_ENV: &str = "WEFT_LAB_DIR";

/// The namespace prefix of the default lab.
pub const DEFAULT_PREFIX: &str = "weftlab";

/// Paths and names of one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
    prefix: String,
}

impl Layout {
    /// The layout of the lab whose state lives in `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        let root = root.into();
        let prefix = if root == Path::new(DEFAULT_STATE_DIR) {
            DEFAULT_PREFIX.to_string()
        } else {
            let h = fnv1a(root.as_os_str().as_encoded_bytes());
            format!("{DEFAULT_PREFIX}{:06x}", h & 0xff_ffff)
        };
        Layout { root, prefix }
    }

    /// The layout named by `dir`, else by `$WEFT_LAB_DIR`, else the default.
    pub fn resolve(dir: Option<&Path>) -> Layout {
        match dir {
            Some(d) => Layout::new(d),
            None => match std::env::var_os(STATE_DIR_ENV) {
                Some(d) if !d.is_empty() => Layout::new(PathBuf::from(d)),
                _ => Layout::new(DEFAULT_STATE_DIR),
            },
        }
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The prefix of every namespace this lab creates (starts with `weft`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `lab.json`, the record of what the lab created.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("lab.json")
    }

    /// The lock serialising commands that change the lab.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The file datastore's root.
    pub fn datastore(&self) -> PathBuf {
        self.root.join("datastore")
    }

    /// The per-node directory (node-state file, IPAM, conflist, logs).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.root.join("nodes").join(node)
    }

    /// The per-pod directory (the echo server's log).
    pub fn pod_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.root.join("pods").join(format!("{namespace}_{name}"))
    }

    /// The namespace of underlay segment `segment` (0 is the first).
    pub fn underlay_netns(&self, segment: usize) -> String {
        match segment {
            0 => format!("{}-ul", self.prefix),
            n => format!("{}-ul{n}", self.prefix),
        }
    }

    /// The namespace of the router joining the underlay segments (only
    /// with more than one segment).
    pub fn router_netns(&self) -> String {
        format!("{}-rt", self.prefix)
    }

    /// The external client's namespace: on the underlay, not a node.
    pub fn external_netns(&self) -> String {
        format!("{}-ext", self.prefix)
    }

    /// The control plane's namespace (etcd, kube-apiserver,
    /// kube-controller-manager), on underlay segment 0; only with
    /// `--datastore kube`.
    pub fn control_plane_netns(&self) -> String {
        format!("{}-cp", self.prefix)
    }

    /// The control plane's directory (certificates, etcd's data, logs,
    /// kubeconfigs); only with `--datastore kube`.
    pub fn control_plane_dir(&self) -> PathBuf {
        self.root.join("control-plane")
    }

    /// A node's namespace.
    pub fn node_netns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// A pod's namespace.
    pub fn pod_netns(&self, node: &str, namespace: &str, name: &str) -> String {
        format!("{}-{node}-{namespace}-{name}", self.prefix)
    }

    /// Whether `netns` is one of this lab's namespaces.
    pub fn owns_netns(&self, netns: &str) -> bool {
        netns
            .strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('-'))
    }
}

/// Paths of one node's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// The node's directory.
    pub dir: PathBuf,
    /// Where weftd (or the lab with `--no-agent`) writes the node state.
    pub node_state: PathBuf,
    /// The plugin's IPAM `dataDir`.
    pub ipam: PathBuf,
    /// The node's CNI conflist.
    pub conflist: PathBuf,
    /// Cached chain results, one file per container ID (libcni's cache).
    pub cni_cache: PathBuf,
    /// weftd's stdout and stderr.
    pub weftd_log: PathBuf,
}

impl NodePaths {
    /// The files under `dir`.
    pub fn new(dir: PathBuf) -> NodePaths {
        NodePaths {
            node_state: dir.join("node-state.json"),
            ipam: dir.join("ipam"),
            conflist: dir.join("weft.conflist"),
            cni_cache: dir.join("cni-cache"),
            weftd_log: dir.join("weftd.log"),
            dir,
        }
    }
}

/// Paths of the control plane's files, all under
/// [`Layout::control_plane_dir`] so that `lab down` removes them with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlanePaths {
    /// The control plane's directory.
    pub dir: PathBuf,
    /// Keys and certificates (mode 0700: it holds the CA's key).
    pub pki: PathBuf,
    /// etcd's `--data-dir`.
    pub etcd_data: PathBuf,
    /// The three processes' logs.
    pub logs: PathBuf,
    /// The cluster admin's kubeconfig (`system:masters`).
    pub admin_kubeconfig: PathBuf,
    /// kube-controller-manager's kubeconfig.
    pub controller_manager_kubeconfig: PathBuf,
    /// kubectl's discovery cache (kept here instead of `~/.kube/cache`).
    pub kubectl_cache: PathBuf,
}

impl ControlPlanePaths {
    /// The control plane's files of `layout`.
    pub fn new(layout: &Layout) -> ControlPlanePaths {
        let dir = layout.control_plane_dir();
        ControlPlanePaths {
            pki: dir.join("pki"),
            etcd_data: dir.join("etcd"),
            logs: dir.join("logs"),
            admin_kubeconfig: dir.join("admin.kubeconfig"),
            controller_manager_kubeconfig: dir.join("kube-controller-manager.kubeconfig"),
            kubectl_cache: dir.join("kubectl-cache"),
            dir,
        }
    }

    /// The log of `process` (`etcd`, `kube-apiserver`, ...).
    pub fn log(&self, process: &str) -> PathBuf {
        self.logs.join(format!("{process}.log"))
    }
}

/// 64-bit FNV-1a: stable across builds and platforms, unlike std's hasher,
/// so a lab's prefix stays the same for every weftctl that looks at it.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_is_weftlab() {
        let l = Layout::new(DEFAULT_STATE_DIR);
        assert_eq!(l.prefix(), "weftlab");
        assert_eq!(l.underlay_netns(0), "weftlab-ul");
        assert_eq!(l.underlay_netns(1), "weftlab-ul1");
        assert_eq!(l.router_netns(), "weftlab-rt");
        assert_eq!(l.control_plane_netns(), "weftlab-cp");
        assert!(l.owns_netns(&l.control_plane_netns()));
        assert!(l.owns_netns(&l.router_netns()));
        assert_eq!(l.node_netns("node1"), "weftlab-node1");
        assert_eq!(l.pod_netns("node1", "x", "a"), "weftlab-node1-x-a");
        assert!(l.owns_netns("weftlab-node1"));
        assert!(!l.owns_netns("weftlab0a1b2c-node1"));
        assert!(!l.owns_netns("weftlabnode1"));
    }

    #[test]
    fn other_dirs_get_their_own_stable_prefix() {
        let a = Layout::new("/tmp/lab-a");
        let b = Layout::new("/tmp/lab-b");
        assert_ne!(a.prefix(), b.prefix());
        assert_eq!(a.prefix(), Layout::new("/tmp/lab-a").prefix());
        assert!(a.prefix().starts_with("weftlab") && a.prefix().len() == 13);
        assert!(!Layout::new(DEFAULT_STATE_DIR).owns_netns(&a.node_netns("n")));
        assert!(!a.owns_netns(&b.node_netns("n")));
    }
}
