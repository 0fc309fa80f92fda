//! Network-namespace fixtures for weft's kernel tests, lab tests and benchmarks.
//!
//! Everything here works inside namespaces that it creates itself, named with a
//! `weft` prefix, and removes them on drop — also when a test panics. Nothing in
//! this crate touches the root network namespace: the only way to run code in a
//! namespace is [`NetNs::exec`] / [`NetNs::command`] (a child process that enters
//! the namespace before `exec`) or [`NetNs::run`] (a fresh thread that enters it).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Environment variable that turns a privileged test's skip into a failure.
/// CI sets it: there a kernel test that cannot run is a broken test, not a pass.
pub const REQUIRE_PRIVILEGED_ENV: &str = "WEFT_REQUIRE_PRIVILEGED";

/// Whether this process may create network namespaces (is root).
///
/// When it may not, prints a loud SKIP line naming the test on stderr and
/// returns false — or panics when [`REQUIRE_PRIVILEGED_ENV`] is set, so that a
/// skipped kernel test can never count as a pass in CI. Callers return early
/// only after this has reported the skip.
pub fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() && Command::new("ip").arg("-V").output().is_ok() {
        return true;
    }
    if std::env::var_os(REQUIRE_PRIVILEGED_ENV).is_some() {
        panic!("{test}: needs root and iproute2, and {REQUIRE_PRIVILEGED_ENV} is set");
    }
    eprintln!("\n*** SKIPPED {test}: needs root and iproute2 (kernel tier) ***\n");
    false
}

/// A network namespace created for one test, removed on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    path: PathBuf,
}

impl NetNs {
    /// Creates `weft<tag>-<pid>-<seq>` (truncated to keep names short), with
    /// its loopback up.
    pub fn new(tag: &str) -> Result<NetNs> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("weft{tag}-{}-{seq}", std::process::id());
        Self::create(&name)
    }

    /// Creates a namespace with exactly this name (which must start with `weft`).
    pub fn create(name: &str) -> Result<NetNs> {
        if !name.starts_with("weft") {
            bail!("refusing to create namespace {name:?}: weft namespaces start with \"weft\"");
        }
        ip(&["netns", "add", name])?;
        let ns = NetNs {
            name: name.to_string(),
            path: PathBuf::from("/run/netns").join(name),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file (`/run/netns/<name>`), as a runtime
    /// passes it in `CNI_NETNS`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the namespace file.
    pub fn file(&self) -> Result<File> {
        File::open(&self.path).with_context(|| format!("open {}", self.path.display()))
    }

    /// A `Command` for `program` that runs inside this namespace
    /// (`ip netns exec <name> program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` inside the namespace and returns its output; fails
    /// when it exits non-zero.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("run {program} in {}", self.name))?;
        if !out.status.success() {
            bail!(
                "{program} {} in {} failed: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// Runs `program args` inside the namespace with `stdin` on its standard
    /// input (e.g. `nft -f -` with a script); returns stdout, and fails with
    /// the program's complaint when it exits non-zero.
    pub fn exec_stdin(&self, program: &str, args: &[&str], stdin: &str) -> Result<String> {
        use std::io::Write;
        use std::process::Stdio;
        let what = || format!("{program} {} in {}", args.join(" "), self.name);
        let mut child = self
            .command(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", what()))?;
        // A program that fails early may close its stdin first: its exit
        // status below says why, not the broken pipe.
        let _ = child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(stdin.as_bytes());
        let out = child
            .wait_with_output()
            .with_context(|| format!("wait for {}", what()))?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                what(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `ip args` inside the namespace; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let out = self.exec("ip", args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a fresh thread that has entered this namespace. setns is
    /// per thread, so the caller's thread (and every other) stays where it is.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let file = self.file()?;
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in {} panicked", self.name))?
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Processes still inside keep the namespace alive but not its name;
        // callers end what they started before dropping.
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("weft-testkit: removing netns {}: {e:#}", self.name);
        }
    }
}

/// Runs `ip args` in the caller's namespace. Only `netns add/del` and
/// commands that name a weft namespace are used from here.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The packet counters of link `link` in the named network namespace:
/// (received, transmitted).
pub fn link_packets(netns: &str, link: &str) -> Result<(u64, u64)> {
    let out = Command::new("ip")
        .args(["-n", netns, "-j", "-s", "link", "show", "dev", link])
        .output()
        .context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip -n {netns} link show {link}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parse ip -j")?;
    let count = |dir: &str| {
        v[0]["stats64"][dir]["packets"]
            .as_u64()
            .with_context(|| format!("no {dir} packets for {link} in {netns}"))
    };
    Ok((count("rx")?, count("tx")?))
}

/// Connects two namespaces with a veth pair (`a_if` in `a`, `b_if` in `b`),
/// both ends up. The pair is created inside `a`, so the root namespace never
/// holds it.
pub fn veth_between(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// A directory under the system temp dir, removed with its contents on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `weft-<tag>-<pid>-<seq>` under the temp dir.
    pub fn new(tag: &str) -> Result<TempDir> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("weft-{tag}-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Compares `text` with the golden file `<manifest_dir>/tests/golden/<name>`;
/// with `WEFT_UPDATE_GOLDEN` set it rewrites the file first (review the
/// diff after an intended change).
pub fn golden(manifest_dir: &str, name: &str, text: &str) {
    let path = Path::new(manifest_dir).join("tests/golden").join(name);
    if std::env::var_os("WEFT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (WEFT_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(text, want, "{name} differs from the golden file");
}
