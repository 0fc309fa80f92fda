//! iperf3 processes inside the lab's namespaces: a server per case, killed
//! by PID when dropped, and supervised clients whose JSON is parsed.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::unistd::Pid;
use weft_lab::netns;

use crate::iperf::{self, IperfRun};
use crate::supervise::{Handle, Killed};

/// The port every server listens on (each in its own namespace).
pub const PORT: u16 = 5201;

/// How long a server gets to open its port.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// An `iperf3 -s` bound to one lab address inside one namespace.
#[derive(Debug)]
pub struct Server {
    child: Child,
    netns: String,
}

impl Server {
    /// Starts the server in `netns` on `addr`, output to `log`, and waits
    /// until it listens.
    pub fn start(netns_name: &str, addr: IpAddr, log: &Path) -> Result<Server> {
        let out =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone().context("duplicate the log's descriptor")?;
        let mut cmd = Command::new("iperf3");
        cmd.args(["-s", "-B", &addr.to_string(), "-p", &PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a terminal's ^C reaches only the
            // benchmark, which then stops the server itself, after the
            // client.
            .process_group(0);
        let child = netns::spawn_in(netns_name, &mut cmd)
            .with_context(|| format!("start iperf3 -s on {addr} in {netns_name}"))?;
        let mut server = Server {
            child,
            netns: netns_name.to_string(),
        };
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while !weft_lab::procs::socket_bound(server.child.id() as i32, "tcp", PORT, Some("0A")) {
            if let Some(status) = server.child.try_wait().context("poll iperf3 -s")? {
                bail!(
                    "iperf3 -s on {addr} in {netns_name} exited ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default().trim()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "iperf3 -s on {addr} in {netns_name} did not listen within {LISTEN_TIMEOUT:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child, not yet reaped: its PID cannot have been reused.
        if let Err(e) = self.child.kill() {
            eprintln!(
                "weft-bench: kill iperf3 -s (pid {}) in {}: {e}",
                self.child.id(),
                self.netns
            );
        }
        let _ = self.child.wait();
    }
}

/// One client run's parameters.
#[derive(Debug, Clone)]
pub struct ClientArgs<'a> {
    /// Where the client runs.
    pub netns: &'a str,
    /// Its source address (a lab address).
    pub from: IpAddr,
    /// The server's address.
    pub to: IpAddr,
    /// Measured seconds (`-t`).
    pub seconds: u32,
    /// Seconds at the start not counted (`-O`): TCP slow start.
    pub omit: u32,
    /// Parallel streams (`-P`).
    pub parallel: u32,
}

/// Runs one `iperf3 -c … -J` under the supervisor and parses its report.
pub fn client(args: &ClientArgs<'_>, sup: &Handle) -> Result<IperfRun> {
    let what = format!("iperf3 -c {} from {} in {}", args.to, args.from, args.netns);
    let mut cmd = Command::new("iperf3");
    cmd.args([
        "-c",
        &args.to.to_string(),
        "-B",
        &args.from.to_string(),
        "-p",
        &PORT.to_string(),
        "-t",
        &args.seconds.to_string(),
        "-O",
        &args.omit.to_string(),
        "-P",
        &args.parallel.to_string(),
        "--connect-timeout",
        "3000",
        "-J",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    // Its own group, so the watchdog's killpg reaches it and nothing else.
    .process_group(0);
    let mut child = netns::spawn_in(args.netns, &mut cmd).with_context(|| what.clone())?;
    let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    // iperf3 ends the test itself; the slack covers connection setup and
    // the final exchange of results.
    let budget = Duration::from_secs(u64::from(args.seconds + args.omit) + 30);
    sup.arm(pid, Instant::now() + budget);
    let done = sup.collect(&mut child).with_context(|| what.clone())?;
    match done.killed {
        Some(Killed::Timeout) => bail!("{what} timed out after {budget:?}"),
        Some(Killed::Interrupted) => bail!("{what} interrupted"),
        None => {}
    }
    // iperf3 -J reports its errors in the JSON, sometimes with status 0.
    let run = iperf::parse(&done.stdout).with_context(|| what.clone())?;
    if !done.status.success() {
        bail!("{what} failed ({})", done.status);
    }
    Ok(run)
}

/// The MTU of `dev` inside `netns`.
pub fn mtu(netns_name: &str, dev: &str) -> Result<u64> {
    let out = netns::ip_in(netns_name, &["-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("parse `ip -j link show {dev}`"))?;
    v.pointer("/0/mtu")
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("no MTU for {dev} in {netns_name}"))
}
