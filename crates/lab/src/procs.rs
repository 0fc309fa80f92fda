//! Processes the lab starts and stops: weftd on each node and the echo
//! server in each pod. Each runs detached (its own session, output to a log
//! file) so it outlives the `weftctl` that started it, and is identified by
//! PID *and* start time so that a recycled PID is never signalled.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::error::{LabError, Result};
use crate::netns;
use crate::state::ProcRecord;

/// How long a process gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Starts `program args` detached inside `netns`, stdout and stderr
/// appended to `log`, stdin from /dev/null. Returns the child (to notice an
/// early exit) and its record.
pub fn spawn_detached(
    netns_name: &str,
    program: &Path,
    args: &[String],
    log: &Path,
) -> Result<(Child, ProcRecord)> {
    let what = format!("start {} in netns {netns_name}", program.display());
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io(what.clone()))?;
    }
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(LabError::io(format!("{what}: open {}", log.display())))?;
    let err = out.try_clone().map_err(LabError::io(what.clone()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    // A session of its own: a terminal's ^C or hangup after `lab up` must
    // not reach the lab's daemons, only `lab down` stops them.
    #[allow(unsafe_code)]
    // SAFETY: setsid is async-signal-safe and touches no memory of the
    // parent; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(Into::into));
    }
    let child = netns::spawn_in(netns_name, &mut cmd)?;
    let pid = i32::try_from(child.id()).map_err(|_| LabError::failed(&what, "pid out of range"))?;
    // The child exists until reaped, so its start time is readable even if
    // it already exited.
    let start_time = start_time(pid)
        .ok_or_else(|| LabError::failed(&what, format!("pid {pid} vanished at once")))?;
    Ok((child, ProcRecord { pid, start_time }))
}

/// `/proc/<pid>/stat`'s state and start time.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume
    // after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3 (state); start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The start time of `pid`, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

/// Whether the recorded process still runs (a zombie does not).
pub fn alive(rec: &ProcRecord) -> bool {
    matches!(stat(rec.pid), Some((state, t)) if t == rec.start_time && state != 'Z')
}

/// Stops the recorded process: SIGTERM, up to `grace` to exit, then
/// SIGKILL. A process that is already gone is not an error.
pub fn stop(rec: &ProcRecord, grace: Duration) -> Result<()> {
    if !signal(rec, Signal::SIGTERM)? {
        return Ok(());
    }
    if wait_gone(rec, grace) {
        return Ok(());
    }
    kill_now(rec)
}

/// Ends the recorded process with SIGKILL at once (no chance to clean
/// up: what a crash or the OOM killer does). A process that is already
/// gone is not an error.
pub fn kill_now(rec: &ProcRecord) -> Result<()> {
    if signal(rec, Signal::SIGKILL)? && !wait_gone(rec, Duration::from_secs(2)) {
        return Err(LabError::Timeout(format!(
            "pid {} did not exit after SIGKILL",
            rec.pid
        )));
    }
    Ok(())
}

/// Sends `sig` if the process is still the recorded one; false when it is
/// gone.
fn signal(rec: &ProcRecord, sig: Signal) -> Result<bool> {
    if !alive(rec) {
        reap(rec.pid);
        return Ok(false);
    }
    match kill(Pid::from_raw(rec.pid), sig) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(e) => Err(LabError::io(format!("send {sig} to pid {}", rec.pid))(
            e.into(),
        )),
    }
}

fn wait_gone(rec: &ProcRecord, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        reap(rec.pid);
        if !alive(rec) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reaps `pid` when it is this process's child (when `lab up` and `lab
/// down` run in one process, as in tests); ECHILD otherwise, ignored.
fn reap(pid: i32) {
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// The last `lines` lines of a log file, for error messages that point
/// at it.
pub fn tail_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether /proc/<pid>/net/<proto>{,6} lists a socket on local `port`
/// (in state `state`, hex, when given; `0A` is TCP LISTEN). The file shows
/// the sockets of the pid's network namespace, so this works for a process
/// inside a lab namespace without entering it.
pub fn socket_bound(pid: i32, proto: &str, port: u16, state: Option<&str>) -> bool {
    let want = format!(":{port:04X}");
    [proto.to_string(), format!("{proto}6")].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&want) && state.is_none_or(|s| cols[3] == s)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let pid = std::process::id() as i32;
        let rec = ProcRecord {
            pid,
            start_time: start_time(pid).unwrap(),
        };
        assert!(alive(&rec));
        let recycled = ProcRecord {
            start_time: rec.start_time + 1,
            ..rec
        };
        assert!(!alive(&recycled), "another start time is another process");
    }

    #[test]
    fn stop_ends_a_child_and_tolerates_a_dead_one() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let rec = ProcRecord {
            pid,
            start_time: start_time(pid).unwrap(),
        };
        stop(&rec, Duration::from_secs(2)).unwrap();
        assert!(!alive(&rec));
        // stop reaped it already; this only satisfies the Child contract.
        let _ = child.wait();
        stop(&rec, Duration::from_secs(2)).unwrap();
    }
}
