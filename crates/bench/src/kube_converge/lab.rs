//! One of the benchmark's two labs (file datastore or a real API server),
//! with its store and the run's stop signal at hand.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use weft_lab::cluster::Datastore;
use weft_lab::model::ModelKind;
use weft_lab::report as lab_report;
use weft_lab::state::{NodeRecord, ProcRecord};
use weft_lab::store::Store;

use crate::labs::{AGENT_TIMEOUT, BenchLab, RunDir, up_opts};
use crate::supervise::Handle;

/// Nodes of each lab: node1 writes, node2 is watched.
pub const NODES: usize = 2;

/// How long `lab sync` may take once the API server holds thousands of
/// objects (each agent lists and digests them all).
pub const LOADED_SYNC_TIMEOUT: Duration = Duration::from_secs(600);

/// A running lab of the benchmark; removed on drop.
pub struct Lab {
    /// The lab itself (its layout and state).
    pub bench: BenchLab,
    /// Its cluster store: the file datastore or the API server.
    pub store: Store,
    /// Which of the two.
    pub datastore: Datastore,
    sup: Handle,
}

impl Lab {
    /// Brings up a 2-node lab (no model pods) on `datastore` in `run_dir`
    /// and waits for its agents; returns it with the wall time of `lab up`.
    pub fn up(
        run_dir: &RunDir,
        datastore: Datastore,
        backend: &str,
        bin_dir: &std::path::Path,
        kube_bin_dir: Option<PathBuf>,
        sup: Handle,
    ) -> Result<(Lab, Duration)> {
        let mut opts = up_opts(NODES, backend, vec![4], ModelKind::None, bin_dir);
        opts.datastore = datastore;
        opts.kube_bin_dir = kube_bin_dir;
        let (bench, took) = BenchLab::up(run_dir.lab_dir(datastore.as_str()), &opts)?;
        let store = Store::open(&bench.layout)
            .with_context(|| format!("open the {} lab's store", datastore.as_str()))?;
        let lab = Lab {
            bench,
            store,
            datastore,
            sup,
        };
        lab.sync().context("wait for the agents after lab up")?;
        Ok((lab, took))
    }

    /// Node `i` (0: node1).
    pub fn node(&self, i: usize) -> Result<&NodeRecord> {
        self.bench
            .state
            .nodes
            .get(i)
            .with_context(|| format!("the lab has no node {}", i + 1))
    }

    /// The netns of node `i`.
    pub fn node_netns(&self, i: usize) -> Result<String> {
        Ok(self.bench.layout.node_netns(&self.node(i)?.name))
    }

    /// node `i`'s weftd.
    pub fn weftd(&self, i: usize) -> Result<ProcRecord> {
        let node = self.node(i)?;
        node.weftd
            .with_context(|| format!("{} runs no weftd", node.name))
    }

    /// kube-apiserver and etcd, in a kube lab.
    pub fn control_plane(&self) -> Option<(ProcRecord, ProcRecord)> {
        let cp = self.bench.state.control_plane.as_ref()?;
        Some((cp.apiserver?, cp.etcd?))
    }

    /// `lab sync` with the agents' usual timeout.
    pub fn sync(&self) -> Result<()> {
        self.sync_within(AGENT_TIMEOUT)
    }

    /// `lab sync`: every agent reports having applied where the cluster
    /// stands now.
    pub fn sync_within(&self, timeout: Duration) -> Result<()> {
        lab_report::sync(&self.bench.layout, timeout)?;
        Ok(())
    }

    /// Fails once a stop signal has arrived, so the labs come down.
    pub fn check_interrupted(&self) -> Result<()> {
        if self.sup.interrupted() {
            bail!("kube-converge benchmark interrupted");
        }
        Ok(())
    }

    /// Runs `lab down`.
    pub fn down(self) -> Result<Duration> {
        self.bench.down()
    }
}
