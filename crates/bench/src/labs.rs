//! Labs that benchmarks bring up: in state directories of their own under
//! /run/weft (so their namespaces, `weftlab<hash>-…`, never collide with a
//! user's lab), removed when dropped — also when the run fails or is
//! interrupted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use weft_lab::cluster::{self, UpOpts};
use weft_lab::{LabState, Layout};

/// Parent of every benchmark's run directory (tmpfs, like the lab's own).
pub const RUN_ROOT: &str = "/run/weft";

/// A benchmark's directory, `/run/weft/bench-<name>`, locked for the whole
/// run: two runs of one benchmark would otherwise remove each other's labs
/// as leftovers.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl RunDir {
    /// Creates and locks `/run/weft/bench-<name>`; fails at once when
    /// another run holds it.
    pub fn acquire(name: &str) -> Result<RunDir> {
        let path = Path::new(RUN_ROOT).join(format!("bench-{name}"));
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        let lock_path = path.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("open {}", lock_path.display()))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                bail!(
                    "another `weftctl bench {name}` is running (it holds {})",
                    lock_path.display()
                )
            }
            Err((_, e)) => return Err(e).with_context(|| format!("lock {}", lock_path.display())),
        };
        Ok(RunDir { path, _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state directory of the lab called `name` in this run.
    pub fn lab_dir(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for RunDir {
    /// Leaves nothing behind: the lock file, then the directory if the
    /// run's labs are gone (a lab that could not be removed keeps its state
    /// there for `weftctl lab down --state-dir`).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path.join("lock"));
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A lab a benchmark brought up; `lab down` runs on drop unless
/// [`BenchLab::down`] already did.
#[derive(Debug)]
pub struct BenchLab {
    /// Its paths and namespace prefix.
    pub layout: Layout,
    /// What `lab up` built (pods added later are recorded here too).
    pub state: LabState,
    removed: bool,
}

impl BenchLab {
    /// Removes whatever a crashed earlier run left in `dir` (the directory
    /// belongs to the benchmark, whose run lock the caller holds), then
    /// brings the lab up. Returns it with the wall time of `lab up` alone.
    pub fn up(dir: PathBuf, opts: &UpOpts) -> Result<(BenchLab, Duration)> {
        let layout = Layout::new(dir);
        cluster::down(&layout).with_context(|| {
            format!(
                "remove the leftovers of an earlier run in {}",
                layout.root().display()
            )
        })?;
        let start = Instant::now();
        let state = cluster::up(&layout, opts).with_context(|| {
            format!(
                "lab up ({} nodes, {}) in {}",
                opts.nodes,
                opts.backend,
                layout.root().display()
            )
        })?;
        let elapsed = start.elapsed();
        Ok((
            BenchLab {
                layout,
                state,
                removed: false,
            },
            elapsed,
        ))
    }

    /// Runs `lab down` and returns its wall time.
    pub fn down(mut self) -> Result<Duration> {
        self.removed = true;
        let start = Instant::now();
        cluster::down(&self.layout)
            .with_context(|| format!("lab down in {}", self.layout.root().display()))?;
        Ok(start.elapsed())
    }
}

impl Drop for BenchLab {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = cluster::down(&self.layout) {
                eprintln!(
                    "weft-bench: lab down in {}: {e}",
                    self.layout.root().display()
                );
            }
        }
    }
}

/// How long each weftd gets to publish its node state.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `lab up`'s options as `weftctl lab up` sets them, on one underlay
/// segment with weftd on every node.
pub fn up_opts(
    nodes: usize,
    backend: &str,
    families: Vec<u8>,
    model: weft_lab::model::ModelKind,
    bin_dir: &Path,
) -> UpOpts {
    UpOpts {
        nodes,
        segments: 1,
        backend: backend.to_string(),
        families,
        model,
        agent: true,
        bin_dir: bin_dir.to_path_buf(),
        agent_timeout: AGENT_TIMEOUT,
        datastore: cluster::Datastore::File,
        kube_bin_dir: None,
    }
}

/// The directory of the running program: the lab finds `weft` and `weftd`
/// next to `weftctl`.
pub fn own_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}
