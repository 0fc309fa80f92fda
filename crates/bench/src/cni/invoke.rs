//! Running a CNI plugin exactly as a container runtime does: env vars,
//! config on stdin, result on stdout, and the wall time from spawn to exit.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::unistd::Pid;
use serde_json::Value;

use crate::supervise::{Handle, Killed};

/// One plugin as a runtime sees it: the network config and where it lives.
#[derive(Debug)]
pub struct Plugin {
    /// `$CNI_PATH/<type>`, the file the runtime executes.
    pub exe: PathBuf,
    /// `CNI_PATH`: the directory (or directories) with the plugin and any
    /// plugin it delegates to (IPAM).
    pub cni_path: PathBuf,
    /// The network config as libcni hands it over (`name` and `cniVersion`
    /// included).
    pub config: Value,
    /// Where the plugin's stderr goes (truncated for each invocation and
    /// read back on failure).
    pub stderr_log: PathBuf,
}

/// One pod attachment as the runtime identifies it.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: the sandbox ID (64 hex digits, as containerd's).
    pub container_id: String,
    /// `CNI_NETNS`: the pod's namespace file.
    pub netns: PathBuf,
    /// `CNI_ARGS`, as containerd's CRI plugin sends it.
    pub args: String,
}

impl Attachment {
    /// An attachment for pod `pod-<index>` in namespace `bench`.
    pub fn new(index: usize, netns: &Path) -> Result<Attachment> {
        let container_id = hex(&random_bytes::<32>()?);
        // A version-4 UUID, like the pod UIDs the API server assigns.
        let mut u = random_bytes::<16>()?;
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        let uid = format!(
            "{}-{}-{}-{}-{}",
            hex(&u[0..4]),
            hex(&u[4..6]),
            hex(&u[6..8]),
            hex(&u[8..10]),
            hex(&u[10..16])
        );
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{index};\
             K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
        );
        Ok(Attachment {
            container_id,
            netns: netns.to_path_buf(),
            args,
        })
    }
}

/// The CNI operations the benchmark times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `CNI_COMMAND=ADD`
    Add,
    /// `CNI_COMMAND=DEL`, with the ADD result as `prevResult`.
    Del,
}

impl Op {
    fn command(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
        }
    }
}

/// A successful invocation: its wall time and its stdout as JSON (`Null`
/// for an empty stdout, which DEL may return).
#[derive(Debug)]
pub struct Outcome {
    /// From just before spawn to the child's exit.
    pub elapsed: Duration,
    /// The plugin's result.
    pub result: Value,
}

/// Runs `plugin` for `op` on `att` in the calling thread's network namespace
/// and waits for it, killing it after `timeout`. `prev_result` is injected
/// into the config (libcni does so for DEL from its cache).
pub fn invoke(
    plugin: &Plugin,
    op: Op,
    att: &Attachment,
    prev_result: Option<&Value>,
    sup: &Handle,
    timeout: Duration,
) -> Result<Outcome> {
    let mut config = plugin.config.clone();
    if let (Some(prev), Some(obj)) = (prev_result.filter(|v| !v.is_null()), config.as_object_mut())
    {
        obj.insert("prevResult".into(), prev.clone());
    }
    let input = serde_json::to_vec(&config)?;
    let stderr = File::create(&plugin.stderr_log)
        .with_context(|| format!("create {}", plugin.stderr_log.display()))?;

    let mut cmd = Command::new(&plugin.exe);
    // A runtime passes its own environment plus the CNI variables; a clean,
    // fixed environment keeps both sides of the comparison identical.
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", op.command())
        .env("CNI_CONTAINERID", &att.container_id)
        .env("CNI_NETNS", &att.netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", &att.args)
        .env("CNI_PATH", &plugin.cni_path)
        // Its own process group, so that a hung plugin can be killed with
        // whatever it started (and a terminal's ^C reaches only the
        // benchmark, which then stops it): one setpgid in the child, the same
        // for both sides.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);

    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {}", plugin.exe.display()))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    sup.arm(pid, start + timeout);
    // The config is far below a pipe's capacity, so this write does not wait
    // for the child. A child that exits without reading gives EPIPE, which is
    // not the failure to report: its exit status and stderr are.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&input);
    }
    let finished = sup.collect(&mut child)?;
    let (elapsed, killed, status) = (finished.exited - start, finished.killed, finished.status);
    let stdout = finished.stdout;

    let what = format!(
        "{} {} (container {})",
        plugin.exe.display(),
        op.command(),
        &att.container_id[..12]
    );
    match killed {
        Some(Killed::Timeout) => bail!("{what} timed out after {timeout:?}"),
        Some(Killed::Interrupted) => bail!("{what} interrupted"),
        None => {}
    }
    if !status.success() {
        let err = std::fs::read_to_string(&plugin.stderr_log).unwrap_or_default();
        bail!(
            "{what} failed ({status}): stdout: {} stderr: {}",
            String::from_utf8_lossy(&stdout).trim(),
            tail(&err, 2000)
        );
    }
    let result = if stdout.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&stdout).with_context(|| {
            format!(
                "{what}: result is not JSON: {}",
                String::from_utf8_lossy(&stdout)
            )
        })?
    };
    Ok(Outcome { elapsed, result })
}

/// The last `max` bytes of `s` (on a char boundary), trimmed.
fn tail(s: &str, max: usize) -> &str {
    let s = s.trim();
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("read /dev/urandom")?;
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_looks_like_containerds() {
        let a = Attachment::new(7, Path::new("/run/netns/weftx")).unwrap();
        assert_eq!(a.container_id.len(), 64);
        assert!(a.container_id.bytes().all(|b| b.is_ascii_hexdigit()));
        let parts: Vec<&str> = a.args.split(';').collect();
        assert_eq!(parts[0], "IgnoreUnknown=1");
        assert_eq!(parts[1], "K8S_POD_NAMESPACE=bench");
        assert_eq!(parts[2], "K8S_POD_NAME=pod-7");
        assert_eq!(
            parts[3],
            format!("K8S_POD_INFRA_CONTAINER_ID={}", a.container_id)
        );
        let uid = parts[4].strip_prefix("K8S_POD_UID=").unwrap();
        let groups: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&uid[14..15], "4", "version 4 UUID: {uid}");
        assert!("89ab".contains(&uid[19..20]), "RFC 4122 variant: {uid}");
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("  abcdef \n", 3), "def");
        assert_eq!(tail("ab", 10), "ab");
        assert_eq!(tail("aé", 1), "");
    }
}
