//! Where the cluster comes from: the `file` datastore or a kube-apiserver.
//! The loop sees only this seam — a snapshot, a wait for change, a place
//! to publish this node's annotations and to report its status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tracing::{info, warn};
use weft_agent::AgentConfig;
use weft_datastore::{Datastore, Snapshot, Watcher};
use weft_kube::Mirror;

/// How often a `kube` source whose client could not be built tries again.
const KUBE_RETRY: Duration = Duration::from_secs(2);

/// A snapshot and the identity of what it holds, for the status report.
pub struct Versioned {
    /// The cluster in the model.
    pub snapshot: Snapshot,
    /// What the status reports as `digest`: the object digest (`kube`), or
    /// the revision as a string (`file`).
    pub digest: String,
}

/// What a pass applied, kept for the reports of later failing passes.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The snapshot's revision.
    pub revision: u64,
    /// The snapshot's digest.
    pub digest: String,
}

/// The loop's view of a source.
pub trait Source {
    /// The current cluster.
    fn snapshot(&mut self) -> Result<Versioned>;
    /// Blocks until the cluster may have changed, or `timeout`.
    fn wait(&mut self, timeout: Duration) -> Result<()>;
    /// Sets (only) these annotations on this node's Node object.
    fn publish_annotations(
        &mut self,
        node: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<()>;
    /// Records the outcome of a pass where the source keeps agent status.
    fn report(&mut self, cfg: &AgentConfig, applied: Option<&Applied>, error: Option<&str>);
}

/// The `file` datastore: a directory every node's agent reads.
pub struct FileSource {
    ds: Datastore,
    watcher: Watcher,
}

impl FileSource {
    /// Opens the datastore at `root` and starts watching it.
    pub fn open(root: &Path) -> Result<FileSource> {
        let ds =
            Datastore::open(root).with_context(|| format!("open datastore {}", root.display()))?;
        let watcher = Watcher::new(root).context("watch the datastore")?;
        Ok(FileSource { ds, watcher })
    }
}

impl Source for FileSource {
    fn snapshot(&mut self) -> Result<Versioned> {
        let snapshot = self.ds.snapshot().context("read the datastore")?;
        let digest = snapshot.revision.to_string();
        Ok(Versioned { snapshot, digest })
    }

    fn wait(&mut self, timeout: Duration) -> Result<()> {
        self.watcher
            .wait(timeout)
            .context("wait for datastore changes")?;
        Ok(())
    }

    fn publish_annotations(
        &mut self,
        node: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.ds
            .update("Node", None, node, |node| {
                let meta = &mut node["metadata"];
                if !meta["annotations"].is_object() {
                    meta["annotations"] = json!({});
                }
                for (k, v) in annotations {
                    meta["annotations"][k] = Value::String(v.clone());
                }
            })
            .context("publish this node's annotations")?;
        Ok(())
    }

    /// The agent's status in the datastore: the revision it applied (what
    /// `weftctl lab sync` waits for in file mode), or the error of its last
    /// pass.
    fn report(&mut self, cfg: &AgentConfig, applied: Option<&Applied>, error: Option<&str>) {
        let mut status = json!({
            "node": cfg.node_name,
            "backend": cfg.backend.as_str(),
            "ready": error.is_none(),
            "time": unix_secs(),
        });
        if let Some(a) = applied.filter(|_| error.is_none()) {
            status["revision"] = json!(a.revision);
        } else if let Ok(Some(prev)) = self.ds.read_status(&cfg.node_name) {
            // Keep the last applied revision while failing.
            status["revision"] = prev["revision"].clone();
        }
        if let Some(e) = error {
            status["error"] = json!(e);
        }
        if let Err(e) = self.ds.write_status(&cfg.node_name, &status) {
            warn!(error = %e, "could not write the agent status");
        }
    }
}

/// A kube-apiserver, mirrored by [`weft_kube::Mirror`].
pub struct KubeSource {
    kubeconfig: Option<PathBuf>,
    mirror: Option<Mirror>,
}

impl KubeSource {
    /// A source that connects on first use and keeps trying until the
    /// client can be built (a kubeconfig written after weftd started, a
    /// ServiceAccount token not mounted yet).
    pub fn new(kubeconfig: Option<PathBuf>) -> KubeSource {
        let mut source = KubeSource {
            kubeconfig,
            mirror: None,
        };
        if let Err(e) = source.mirror() {
            warn!(
                error = format!("{e:#}"),
                "cannot start the API watchers yet; retrying"
            );
        }
        source
    }

    fn mirror(&mut self) -> Result<&mut Mirror> {
        if self.mirror.is_none() {
            let mirror = Mirror::start(self.kubeconfig.as_deref())
                .context("start watching the API server")?;
            info!(kubeconfig = ?self.kubeconfig, "watching the API server");
            self.mirror = Some(mirror);
        }
        Ok(self.mirror.as_mut().expect("mirror started above"))
    }
}

impl Source for KubeSource {
    fn snapshot(&mut self) -> Result<Versioned> {
        let snap = self
            .mirror()?
            .snapshot()
            .context("snapshot the API server's objects")?;
        Ok(Versioned {
            snapshot: snap.snapshot,
            digest: snap.digest,
        })
    }

    fn wait(&mut self, timeout: Duration) -> Result<()> {
        match &self.mirror {
            Some(mirror) => {
                mirror.wait(timeout);
            }
            None => std::thread::sleep(timeout.min(KUBE_RETRY)),
        }
        Ok(())
    }

    fn publish_annotations(
        &mut self,
        node: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.mirror()?
            .publish_node_annotations(node, annotations)
            .context("publish this node's annotations")?;
        Ok(())
    }

    /// The API server keeps no agent status: the status file and the
    /// health endpoint carry it.
    fn report(&mut self, _cfg: &AgentConfig, _applied: Option<&Applied>, _error: Option<&str>) {}
}

/// Seconds since the epoch (0 if the clock is before it).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
