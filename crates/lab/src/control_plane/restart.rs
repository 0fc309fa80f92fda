//! Restarting one process of the control plane (`lab control-plane
//! restart`): the lab's way to take the API away from the agents — a
//! crash (SIGKILL) or an orderly restart, down for as long as the test
//! wants — and bring it back exactly as `lab up` ran it.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Component, READY_TIMEOUT, ready, record, spawn, wait_for};
use crate::error::{LabError, Result};
use crate::layout::{ControlPlanePaths, Layout};
use crate::procs;
use crate::state::{LabLock, LabState, ProcRecord};

/// How long a control-plane process gets to exit after SIGTERM before
/// SIGKILL: the API server drains its requests and etcd syncs its log,
/// both slower than a pod's echo server on a busy two-core machine.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// What [`restart`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarted {
    /// The process restarted.
    pub component: Component,
    /// Whether it was stopped with SIGKILL (else SIGTERM).
    pub killed: bool,
    /// The process that was stopped (`None` when it was not running).
    pub stopped: Option<ProcRecord>,
    /// The process started in its place.
    pub started: ProcRecord,
    /// Its log (shared with the processes it replaced).
    pub log: PathBuf,
    /// From the old process gone to the new one started.
    pub down: Duration,
    /// From the new process started until it was ready.
    pub ready_after: Duration,
}

impl fmt::Display for Restarted {
    /// One line for the operator: what stopped, what started, how long it
    /// was down and took to serve, where its log is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.component.binary();
        match self.stopped {
            Some(old) => {
                let how = if self.killed { "killed" } else { "stopped" };
                write!(f, "{name}: pid {} {how}; ", old.pid)?;
            }
            None => write!(f, "{name}: was not running; ")?,
        }
        write!(
            f,
            "pid {} started after {} ms down, serving after {} ms (log {})",
            self.started.pid,
            self.down.as_millis(),
            self.ready_after.as_millis(),
            self.log.display()
        )
    }
}

/// Restarts the control plane's `component` as `lab up` started it:
/// stops the recorded process (SIGKILL at once with `kill`, else SIGTERM
/// and up to [`STOP_GRACE`]), leaves it down for `down_for`, starts it
/// with the same arguments and log, records it in `lab.json`, and waits
/// (up to [`READY_TIMEOUT`]) until it serves: the API server answers
/// `/readyz`; etcd listens and, when the API server runs, the API server
/// is ready again on it; the controller manager listens on its port.
///
/// The lab's lock is held while the record changes, not while the
/// process is down, so other commands (and their failures against a
/// missing API) are possible meanwhile.
pub fn restart(
    layout: &Layout,
    component: Component,
    kill: bool,
    down_for: Duration,
) -> Result<Restarted> {
    let op = format!("restart {}", component.binary());
    let stopped = {
        let _lock = LabLock::acquire(layout)?;
        let state = LabState::require(layout)?;
        let running = component.recorded(record(&state)?).filter(procs::alive);
        if let Some(rec) = &running {
            if kill {
                procs::kill_now(rec)?;
            } else {
                procs::stop(rec, STOP_GRACE)?;
            }
        }
        running
    };
    let gone = Instant::now();
    std::thread::sleep(down_for);

    let lock = LabLock::acquire(layout)?;
    let mut state = LabState::require(layout)?;
    // Another restart may have started it meanwhile: a second one would
    // fight it for its port and data directory.
    if let Some(other) = component.recorded(record(&state)?).filter(procs::alive) {
        return Err(LabError::Invalid(format!(
            "{op}: pid {} was started while it was down (another restart?)",
            other.pid
        )));
    }
    let down = gone.elapsed();
    let begun = Instant::now();
    let mut started = [spawn(layout, &mut state, component)?];
    drop(lock);
    let rec = component
        .recorded(record(&state)?)
        .expect("spawn records the process");
    let deadline = begun + READY_TIMEOUT;
    let what = format!("{} to serve", component.binary());
    wait_for(&mut started, deadline, &op, &what, || {
        ready(layout, &state, component)
    })?;
    let apiserver = Component::ApiServer;
    let dependent = apiserver.recorded(record(&state)?).filter(procs::alive);
    if component == Component::Etcd && dependent.is_some() {
        wait_for(
            &mut started,
            deadline,
            &op,
            "kube-apiserver /readyz",
            || ready(layout, &state, apiserver),
        )?;
    }
    Ok(Restarted {
        component,
        killed: kill,
        stopped,
        started: rec,
        log: ControlPlanePaths::new(layout).log(component.binary()),
        down,
        ready_after: begun.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_both_processes() {
        let rec = |pid| ProcRecord { pid, start_time: 1 };
        let mut r = Restarted {
            component: Component::ApiServer,
            killed: true,
            stopped: Some(rec(10)),
            started: rec(11),
            log: "/l/kube-apiserver.log".into(),
            down: Duration::from_millis(8000),
            ready_after: Duration::from_millis(2500),
        };
        assert_eq!(
            r.to_string(),
            "kube-apiserver: pid 10 killed; pid 11 started after 8000 ms down, \
             serving after 2500 ms (log /l/kube-apiserver.log)"
        );
        r.stopped = None;
        assert!(
            r.to_string()
                .starts_with("kube-apiserver: was not running; pid 11")
        );
    }
}
