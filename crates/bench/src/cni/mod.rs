//! CNI ADD/DEL latency: weft against the reference `bridge` + `host-local`
//! plugins (what a Flannel-like setup runs), same machine, same run.
//!
//! Each side gets its own node namespace and its own pod namespaces. The
//! plugins run in the node namespace, exactly as a container runtime would
//! run them in the host's: a dedicated thread enters the node namespace
//! (setns is per thread) and spawns them, and children inherit the
//! namespace of the thread that forks them. No wrapper process (such as
//! `ip netns exec`) sits between the timer and the plugin. The calling thread
//! never leaves the root namespace, and nothing is created there.

mod invoke;
mod setup;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

use crate::stats::{Summary, round3};
use crate::supervise::{Handle, Supervisor};
use invoke::{Attachment, Op, Plugin, invoke};
use setup::{Side, WorkDir, require_executable};

/// The fewest pods a run may time: below this p99 is not a tail.
pub const MIN_PODS: usize = 100;
/// Target: weft's ADD p50 at most this fraction of the reference's.
pub const ADD_P50_RATIO_MAX: f64 = 0.2;
/// Target: weft's ADD p99 in milliseconds.
pub const ADD_P99_MS_MAX: f64 = 10.0;

/// Options for [`run`].
#[derive(Debug, Clone)]
pub struct CniBenchOpts {
    /// Pods to attach and detach per side (timed); at least [`MIN_PODS`].
    pub pods: usize,
    /// The `weft` plugin binary. It is invoked through a symlink named
    /// `weft` in a private `CNI_PATH` directory.
    pub weft_bin: PathBuf,
    /// Directory with the reference plugins `bridge` and `host-local`
    /// (Debian's containernetworking-plugins: /usr/lib/cni).
    pub reference_dir: PathBuf,
    /// Untimed ADD+DEL pairs per side before the timed ones (warms the page
    /// cache for the binaries and the plugins' state directories).
    pub warmup: usize,
    /// Measure only the reference plugins (weft's side is skipped and its
    /// report fields are `null`).
    pub only_reference: bool,
    /// Pod CIDRs in weft's config. IPv4 only by default, like the reference.
    pub weft_pod_cidrs: Vec<String>,
    /// Parent of the private work directory holding both plugins' dataDirs.
    /// Default: a tmpfs, the filesystem of weft's default dataDir in
    /// production (/run on a systemd host): /run when it is tmpfs here,
    /// /dev/shm otherwise. The reference gets the same filesystem, so
    /// neither side pays for storage the other does not. The report names
    /// the filesystem (`data_dir_fs`).
    pub work_dir: PathBuf,
    /// Parent of the private directory weft is installed into, its
    /// `CNI_PATH`. Default /var/tmp: a disk filesystem, as /opt/cni/bin
    /// and the reference's /usr/lib/cni are (an executable on tmpfs starts
    /// slower). The report names it (`plugin_fs`).
    pub bin_dir: PathBuf,
    /// A plugin process still running after this is killed and the run fails.
    pub timeout: Duration,
}

impl Default for CniBenchOpts {
    fn default() -> Self {
        // weftctl and weft are built into the same target directory.
        let weft_bin = std::env::current_exe()
            .map(|p| p.with_file_name("weft"))
            .unwrap_or_else(|_| PathBuf::from("weft"));
        CniBenchOpts {
            pods: MIN_PODS,
            weft_bin,
            reference_dir: PathBuf::from("/usr/lib/cni"),
            warmup: 5,
            only_reference: false,
            weft_pod_cidrs: vec!["10.244.0.0/16".into()],
            work_dir: default_work_dir(),
            bin_dir: PathBuf::from("/var/tmp"),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Installs the plugin into `bin_dir` as a node gets it: through
/// `weft_cni::install` (what `weftctl install-cni` runs), with a conflist
/// holding `config`. The runtime executes that installed copy, as the
/// reference's from its package, never the build output: a file the linker
/// wrote through mmap starts about 0.25 ms slower per exec here than the
/// same bytes written in one go.
fn install_weft(
    bin: &Path,
    config: &Value,
    bin_dir: &Path,
    conf_dir: &Path,
) -> Result<weft_cni::install::Installed> {
    let mut plugin = config.as_object().cloned().unwrap_or_default();
    let list = json!({
        "cniVersion": plugin.remove("cniVersion"),
        "name": plugin.remove("name"),
        "plugins": [plugin],
    });
    let source = conf_dir.join("source.conflist");
    std::fs::write(&source, serde_json::to_vec_pretty(&list)?)
        .with_context(|| format!("write {}", source.display()))?;
    let installed = weft_cni::install::install(bin, &source, bin_dir, conf_dir)
        .with_context(|| format!("install {}", bin.display()))?;
    std::fs::remove_file(&source).with_context(|| format!("remove {}", source.display()))?;
    Ok(installed)
}

/// /run when it is tmpfs (a systemd host), else /dev/shm (tmpfs everywhere).
fn default_work_dir() -> PathBuf {
    let run = PathBuf::from("/run");
    if setup::fs_type(&run) == "tmpfs" {
        run
    } else {
        PathBuf::from("/dev/shm")
    }
}

/// Runs the benchmark and returns its report as JSON.
///
/// Needs root. Call it from the main thread before it starts other threads:
/// SIGINT/SIGTERM/SIGHUP are blocked in the calling thread for the duration
/// and handled by stopping the run and removing everything it created
/// (a process-wide signal would otherwise reach a thread that does not block
/// it and kill the process before cleanup).
pub fn run(opts: &CniBenchOpts) -> Result<Value> {
    if opts.pods < MIN_PODS {
        bail!("--pods must be at least {MIN_PODS} (got {})", opts.pods);
    }
    if opts.timeout.is_zero() {
        bail!("timeout must be positive");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the CNI benchmark creates network namespaces: run it as root");
    }
    let bridge = opts.reference_dir.join("bridge");
    require_executable(&bridge, "reference plugin")?;
    require_executable(&opts.reference_dir.join("host-local"), "reference IPAM")?;
    let weft_bin = if opts.only_reference {
        None
    } else {
        require_executable(&opts.weft_bin, "weft plugin")?;
        Some(
            std::fs::canonicalize(&opts.weft_bin)
                .with_context(|| format!("resolve {}", opts.weft_bin.display()))?,
        )
    };

    // Declared first, dropped last: signals stay handled during cleanup.
    let supervisor = Supervisor::start()?;
    let work = WorkDir::create(&opts.work_dir)?;
    let bin_work = WorkDir::create(&opts.bin_dir)?;
    let logs = work.subdir("logs")?;

    let ref_config = json!({
        "cniVersion": "1.0.0",
        "name": "refbench",
        "type": "bridge",
        "bridge": "weftbr0",
        "isGateway": true,
        // No ipMasq: the bridge plugin then sets no iptables rules.
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": [[{ "subnet": "10.245.0.0/16" }]],
            "dataDir": work.subdir("host-local")?,
        },
    });
    let reference = Plugin {
        exe: bridge,
        cni_path: opts.reference_dir.clone(),
        config: ref_config,
        stderr_log: logs.join("reference.stderr"),
    };

    // The reference first: its side runs also when weft's cannot.
    let mut sides = vec![Side::new("reference", "r", reference, opts.pods)?];
    if let Some(bin) = &weft_bin {
        let config = json!({
            "cniVersion": "1.1.0",
            "name": "weftbench",
            "type": "weft",
            "podCIDRs": opts.weft_pod_cidrs,
            "dataDir": work.subdir("weft")?,
        });
        let cni_path = bin_work.path().to_path_buf();
        let installed = install_weft(bin, &config, &cni_path, &work.subdir("weft-net.d")?)?;
        let weft = Plugin {
            exe: installed.plugin,
            cni_path,
            config,
            stderr_log: logs.join("weft.stderr"),
        };
        sides.push(Side::new("weft", "w", weft, opts.pods)?);
    }

    let handle = supervisor.handle();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("bench-spawner".into())
            .spawn_scoped(s, || measure(&mut sides, opts, &handle))
            .context("spawn the measuring thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))?
    })
    .with_context(|| interrupted_hint(&supervisor))?;

    let report = report(opts, &sides, weft_bin.as_ref(), &work, &bin_work);
    // Explicit order: namespaces, then the work directory, then signals.
    drop(sides);
    drop(work);
    drop(supervisor);
    Ok(report)
}

fn interrupted_hint(sup: &Supervisor) -> &'static str {
    if sup.interrupted() {
        "CNI benchmark interrupted"
    } else {
        "CNI benchmark failed"
    }
}

/// Runs on its own thread, which enters each side's node namespace before
/// spawning that side's plugins and never returns to the root namespace (it
/// ends instead).
fn measure(sides: &mut [Side], opts: &CniBenchOpts, sup: &Handle) -> Result<()> {
    let enter = |side: &Side| {
        setns(&side.node_file, CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns into {}", side.node_name()))
    };
    let check = || {
        if sup.interrupted() {
            bail!("interrupted");
        }
        Ok(())
    };

    for w in 0..opts.warmup {
        for side in sides.iter() {
            check()?;
            enter(side)?;
            let att = Attachment::new(w, side.pod_netns(w % opts.pods))?;
            let add = invoke(&side.plugin, Op::Add, &att, None, sup, opts.timeout)
                .and_then(|o| check_add_result(&o.result).map(|()| o))
                .with_context(|| format!("{} warm-up ADD", side.label))?;
            invoke(
                &side.plugin,
                Op::Del,
                &att,
                Some(&add.result),
                sup,
                opts.timeout,
            )
            .with_context(|| format!("{} warm-up DEL", side.label))?;
        }
    }

    // Interleaved per pod, alternating which side goes first, so that drift
    // on the machine (frequency, background load) hits both sides alike.
    let n_sides = sides.len();
    let order = |i: usize| -> Vec<usize> {
        let mut o: Vec<usize> = (0..n_sides).collect();
        if i % 2 == 1 {
            o.reverse();
        }
        o
    };
    for i in 0..opts.pods {
        for k in order(i) {
            check()?;
            let side = &mut sides[k];
            enter(side)?;
            let out = invoke(
                &side.plugin,
                Op::Add,
                &side.pods[i],
                None,
                sup,
                opts.timeout,
            )
            .with_context(|| format!("{} ADD pod-{i}", side.label))?;
            check_add_result(&out.result).with_context(|| format!("{} ADD pod-{i}", side.label))?;
            side.add.push(out.elapsed);
            side.results[i] = out.result;
        }
    }
    for i in 0..opts.pods {
        for k in order(i) {
            check()?;
            let side = &mut sides[k];
            enter(side)?;
            let prev = std::mem::take(&mut side.results[i]);
            let out = invoke(
                &side.plugin,
                Op::Del,
                &side.pods[i],
                Some(&prev),
                sup,
                opts.timeout,
            )
            .with_context(|| format!("{} DEL pod-{i}", side.label))?;
            side.del.push(out.elapsed);
        }
    }
    Ok(())
}

/// An ADD that "succeeds" without an address would make a fast plugin look
/// good; require at least one IP in the result.
fn check_add_result(result: &Value) -> Result<()> {
    match result.get("ips").and_then(Value::as_array) {
        Some(ips) if !ips.is_empty() => Ok(()),
        _ => bail!("ADD result has no \"ips\": {result}"),
    }
}

fn summaries(side: &Side) -> (Option<Summary>, Option<Summary>) {
    (Summary::of(&side.add), Summary::of(&side.del))
}

fn report(
    opts: &CniBenchOpts,
    sides: &[Side],
    weft_bin: Option<&PathBuf>,
    work: &WorkDir,
    bin_work: &WorkDir,
) -> Value {
    let find = |label: &str| sides.iter().find(|s| s.label == label);
    let reference = find("reference").map(summaries);
    let weft = find("weft").map(summaries);

    let ratio = |w: Option<Summary>, r: Option<Summary>, f: fn(&Summary) -> f64| {
        let (w, r) = (w?, r?);
        (f(&r) > 0.0).then(|| round3(f(&w) / f(&r)))
    };
    let (ratio_json, met_json) = match (weft, reference) {
        (Some((wa, wd)), Some((ra, rd))) => {
            let add_p50 = ratio(wa, ra, |s| s.p50_ms);
            let add_p99 = ratio(wa, ra, |s| s.p99_ms);
            let p50_ok = add_p50.is_some_and(|r| r <= ADD_P50_RATIO_MAX);
            let p99_ok = wa.is_some_and(|s| s.p99_ms <= ADD_P99_MS_MAX);
            (
                json!({
                    "add_p50": add_p50,
                    "add_p99": add_p99,
                    "del_p50": ratio(wd, rd, |s| s.p50_ms),
                    "del_p99": ratio(wd, rd, |s| s.p99_ms),
                }),
                json!({
                    "add_p50_ratio": p50_ok,
                    "add_p99_ms": p99_ok,
                    "all": p50_ok && p99_ok,
                }),
            )
        }
        _ => (Value::Null, Value::Null),
    };
    let config = |label: &str| find(label).map(|s| s.plugin.config.clone());

    json!({
        "benchmark": "cni",
        "pods": opts.pods,
        "warmup": opts.warmup,
        "order": "interleaved per pod, alternating which side goes first; ADDs for all pods, then DELs",
        "timing": "wall time per plugin process, spawn to exit, plugin run in a node netns via a setns'd spawning thread",
        "machine": crate::machine::machine(),
        "data_dir_fs": setup::fs_type(work.path()),
        "plugin_fs": setup::fs_type(bin_work.path()),
        "reference_fs": setup::fs_type(&opts.reference_dir),
        "weft": weft.map(|(add, del)| json!({
            "bin": weft_bin,
            "config": config("weft"),
            "add": add,
            "del": del,
        })),
        "reference": reference.map(|(add, del)| json!({
            "plugins": "bridge+host-local",
            "dir": opts.reference_dir,
            "version": setup::reference_version(),
            "config": config("reference"),
            "add": add,
            "del": del,
        })),
        "ratio": ratio_json,
        "targets": {
            "add_p50_ratio_max": ADD_P50_RATIO_MAX,
            "add_p99_ms_max": ADD_P99_MS_MAX,
        },
        "met": met_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_result_needs_an_ip() {
        assert!(check_add_result(&json!({"ips": [{"address": "10.0.0.2/32"}]})).is_ok());
        assert!(check_add_result(&json!({"ips": []})).is_err());
        assert!(check_add_result(&json!({"cniVersion": "1.1.0"})).is_err());
        assert!(check_add_result(&Value::Null).is_err());
    }
}
