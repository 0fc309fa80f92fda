//! Keeps a benchmark stoppable without leaking namespaces: a watchdog that
//! kills a measured process (a plugin, an iperf3 client) that hangs, and a
//! signal thread that turns SIGINT/SIGTERM/SIGHUP into an orderly stop, so
//! that the `Drop`s that remove the namespaces still run.

use std::io::Read;
use std::marker::PhantomData;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, killpg, sigaction};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// Signals that stop the benchmark cleanly.
const STOP: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// How often the watchdog looks for a stop signal.
const POLL: Duration = Duration::from_millis(50);

/// Set by the signal handler (all it may do is store to an atomic); the
/// watchdog thread acts on it.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop(sig: nix::libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Why a supervised process was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// It ran past its deadline.
    Timeout,
    /// The benchmark received a stop signal.
    Interrupted,
}

#[derive(Default)]
struct State {
    /// The process being watched and its deadline.
    current: Option<(Pid, Instant)>,
    /// Set when the watchdog or the signal thread killed `current`.
    killed: Option<Killed>,
    shutdown: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    interrupted: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked; the state is
        // plain data and still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kill_current(&self, st: &mut State, why: Killed) {
        if let Some((pid, _)) = st.current.take() {
            // The plugin leads its own process group (so does nothing
            // else), which also takes down anything it started that still
            // holds its stdout. It is not reaped yet (disarm comes first), so
            // the ID cannot have been reused.
            let _ = killpg(pid, Signal::SIGKILL);
            st.killed = Some(why);
        }
    }
}

/// Watchdog and stop-signal handling for one benchmark run.
///
/// SIGINT/SIGTERM/SIGHUP get a handler that only records the signal; the
/// watchdog thread then marks the run interrupted and kills the supervised
/// child, and the benchmark stops at its next check, so the `Drop`s that
/// remove namespaces and labs run. Handlers, not a blocked mask with a
/// `sigwait` thread: a blocked mask is inherited by every thread and every
/// child process (std does not reset it at spawn), and the lab's daemons
/// started under it would ignore `lab down`'s SIGTERM. Exec resets handled
/// signals to their defaults, so children start clean.
///
/// One per process at a time; dropping it restores the previous handlers.
/// A stop signal that arrives after that takes its default effect, which
/// is what the user asked for: cleanup has already run.
pub struct Supervisor {
    shared: Arc<Shared>,
    watchdog: Option<JoinHandle<()>>,
    old: Vec<(Signal, SigAction)>,
    _not_send: PhantomData<*const ()>,
}

impl Supervisor {
    /// Installs the stop handlers and starts the watchdog thread.
    pub fn start() -> Result<Supervisor> {
        STOP_SIGNAL.store(0, Ordering::SeqCst);
        let shared = Arc::new(Shared::default());
        let mut sup = Supervisor {
            shared: shared.clone(),
            watchdog: None,
            old: Vec::new(),
            _not_send: PhantomData,
        };
        // SA_RESTART: a signal landing on a thread in a blocking call must
        // not turn into a spurious EINTR failure there.
        let action = SigAction::new(
            SigHandler::Handler(on_stop),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in STOP {
            #[allow(unsafe_code)]
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe; the previous action is kept and restored
            // on drop.
            let old = unsafe { sigaction(sig, &action) }
                .with_context(|| format!("install a {sig} handler"))?;
            sup.old.push((sig, old));
        }
        sup.watchdog = Some(
            std::thread::Builder::new()
                .name("bench-watchdog".into())
                .spawn(move || watchdog(&shared))
                .context("spawn watchdog thread")?,
        );
        Ok(sup)
    }

    /// Whether a stop signal has arrived.
    pub fn interrupted(&self) -> bool {
        self.shared.interrupted.load(Ordering::SeqCst)
    }

    /// A cloneable handle for the thread that spawns the measured processes.
    pub fn handle(&self) -> Handle {
        Handle(self.shared.clone())
    }
}

/// What the spawning thread uses: arm the watchdog for a child, disarm it.
#[derive(Clone)]
pub struct Handle(Arc<Shared>);

impl Handle {
    /// Watches `pid`, which must lead its own process group, until
    /// [`Handle::disarm`]; kills the group at `deadline`.
    pub fn arm(&self, pid: Pid, deadline: Instant) {
        let mut st = self.0.lock();
        st.current = Some((pid, deadline));
        st.killed = None;
        if self.0.interrupted.load(Ordering::SeqCst) {
            self.0.kill_current(&mut st, Killed::Interrupted);
        }
        drop(st);
        self.0.wake.notify_all();
    }

    /// Stops watching. Call after the child has exited and before reaping
    /// it. Returns why it was killed, if it was.
    pub fn disarm(&self) -> Option<Killed> {
        let mut st = self.0.lock();
        st.current = None;
        st.killed.take()
    }

    /// Whether a stop signal has arrived.
    pub fn interrupted(&self) -> bool {
        self.0.interrupted.load(Ordering::SeqCst)
    }

    /// Finishes an armed `child`: reads its stdout (if piped) to the end,
    /// waits for its exit *without* reaping, so the PID stays ours until
    /// the watchdog is disarmed, then disarms and reaps.
    pub fn collect(&self, child: &mut Child) -> Result<Finished> {
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        let mut stdout = Vec::new();
        let read = child.stdout.take().map(|mut s| s.read_to_end(&mut stdout));
        let waited = loop {
            match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        let exited = Instant::now();
        let killed = self.disarm();
        let status = child.wait().context("wait for child")?;
        waited.context("waitid")?;
        if let Some(Err(e)) = read {
            return Err(e).context("read child stdout");
        }
        Ok(Finished {
            status,
            stdout,
            exited,
            killed,
        })
    }
}

/// A supervised child after [`Handle::collect`].
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// When its exit was seen (before the reaping bookkeeping).
    pub exited: Instant,
    /// Why the supervisor killed it, if it did.
    pub killed: Option<Killed>,
}

fn watchdog(sh: &Shared) {
    let mut st = sh.lock();
    loop {
        if st.shutdown {
            return;
        }
        let sig = STOP_SIGNAL.swap(0, Ordering::SeqCst);
        if sig != 0 {
            let name = Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.to_string());
            eprintln!("weft-bench: {name}: stopping and cleaning up");
            sh.interrupted.store(true, Ordering::SeqCst);
            sh.kill_current(&mut st, Killed::Interrupted);
        }
        let now = Instant::now();
        let wait = match st.current {
            Some((pid, deadline)) if now >= deadline => {
                eprintln!("weft-bench: process {pid} timed out; killing it");
                sh.kill_current(&mut st, Killed::Timeout);
                POLL
            }
            Some((_, deadline)) => POLL.min(deadline - now),
            None => POLL,
        };
        st = sh
            .wake
            .wait_timeout(st, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.watchdog.take() {
            let _ = h.join();
        }
        for (sig, old) in self.old.drain(..).rev() {
            #[allow(unsafe_code)]
            // SAFETY: restores the action that was in place before start().
            let _ = unsafe { sigaction(sig, &old) };
        }
    }
}
