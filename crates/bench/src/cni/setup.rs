//! What a CNI benchmark run sets up and tears down: a private work
//! directory, one node namespace plus N pod namespaces per side, and the
//! facts about the machine that go into the report.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use weft_testkit::NetNs;

use super::invoke::{Attachment, Plugin};

/// A directory of its own under the chosen parent, removed on drop. Holds the
/// plugins' `dataDir`s, weft's `CNI_PATH` and the stderr logs, so nothing
/// under /var/lib is touched.
#[derive(Debug)]
pub struct WorkDir(PathBuf);

impl WorkDir {
    /// Creates `<parent>/weft-bench-<pid>-<n>` (mode 0700).
    pub fn create(parent: &Path) -> Result<WorkDir> {
        for n in 0..1000u32 {
            let path = parent.join(format!("weft-bench-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(WorkDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
            }
        }
        bail!("no free work directory name under {}", parent.display())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Creates and returns the subdirectory `name`.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.0.join(name);
        std::fs::create_dir(&p).with_context(|| format!("create {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("weft-bench: removing {}: {e}", self.0.display());
        }
    }
}

/// One side of the comparison: a plugin, its node namespace and its pods.
#[derive(Debug)]
pub struct Side {
    /// `weft` or `reference`.
    pub label: &'static str,
    /// The plugin as the runtime invokes it.
    pub plugin: Plugin,
    /// Pod attachments, one per pod namespace.
    pub pods: Vec<Attachment>,
    /// ADD results, kept for DEL's `prevResult`.
    pub results: Vec<Value>,
    /// Timed ADD samples.
    pub add: Vec<Duration>,
    /// Timed DEL samples.
    pub del: Vec<Duration>,
    /// The node namespace, open, for the spawning thread's setns.
    pub node_file: File,
    // Declared last so that they are removed after everything above; the pod
    // namespaces go before the node's.
    pod_ns: Vec<NetNs>,
    node: NetNs,
}

impl Side {
    /// Creates the node namespace `weft<tag>n-…` and `pods` pod namespaces
    /// `weft<tag>p-…` (not timed).
    pub fn new(label: &'static str, tag: &str, plugin: Plugin, pods: usize) -> Result<Side> {
        let node = NetNs::new(&format!("{tag}n"))?;
        let node_file = node.file()?;
        let mut pod_ns = Vec::with_capacity(pods);
        let mut atts = Vec::with_capacity(pods);
        for i in 0..pods {
            let ns = NetNs::new(&format!("{tag}p"))?;
            atts.push(Attachment::new(i, ns.path())?);
            pod_ns.push(ns);
        }
        Ok(Side {
            label,
            plugin,
            pods: atts,
            results: vec![Value::Null; pods],
            add: Vec::with_capacity(pods),
            del: Vec::with_capacity(pods),
            node_file,
            pod_ns,
            node,
        })
    }

    /// The node namespace's name.
    pub fn node_name(&self) -> &str {
        self.node.name()
    }

    /// The namespace file of pod `i`.
    pub fn pod_netns(&self, i: usize) -> &Path {
        self.pod_ns[i].path()
    }
}

/// Checks that `path` is an executable regular file.
pub fn require_executable(path: &Path, what: &str) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{what}: {} not found", path.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        bail!("{what}: {} is not an executable file", path.display());
    }
    Ok(())
}

/// The filesystem type of `path` (the plugins' dataDirs live there, and
/// fsync costs differ by orders of magnitude between tmpfs and a disk).
pub fn fs_type(path: &Path) -> String {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
        statfs,
    };
    let Ok(st) = statfs(path) else {
        return "unknown".into();
    };
    let t = st.filesystem_type();
    let known = [
        (TMPFS_MAGIC, "tmpfs"),
        (EXT4_SUPER_MAGIC, "ext4"),
        (XFS_SUPER_MAGIC, "xfs"),
        (BTRFS_SUPER_MAGIC, "btrfs"),
        (OVERLAYFS_SUPER_MAGIC, "overlay"),
    ];
    known
        .iter()
        .find(|(m, _)| *m == t)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| format!("{:#x}", t.0))
}

/// The installed containernetworking-plugins package version, where dpkg
/// knows it (Debian's binaries report "version unknown" themselves).
pub fn reference_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "containernetworking-plugins"])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}
