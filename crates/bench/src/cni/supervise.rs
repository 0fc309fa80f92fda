//! Keeps a benchmark stoppable without leaking namespaces: a watchdog that
//! kills a plugin process that hangs, and a signal thread that turns
//! SIGINT/SIGTERM/SIGHUP into an orderly stop, so that the `Drop`s that remove
//! the namespaces still run.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};
use nix::sys::pthread::{Pthread, pthread_kill, pthread_self};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg};
use nix::unistd::Pid;

/// Signals that stop the benchmark cleanly.
const STOP: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];
/// Signal used only to wake the signal thread when the supervisor is dropped.
const WAKE: Signal = Signal::SIGUSR2;

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
/// Create it on the thread that runs the benchmark *before* that thread
/// spawns any other thread: it blocks the stop signals in the calling thread,
/// threads spawned afterwards inherit the mask, and a dedicated thread
/// receives them with `sigwait`. (Child processes get a clean mask: std resets
/// it at spawn.) Dropping it restores the caller's mask. `!Send`, because the
/// mask belongs to the creating thread.
pub struct Supervisor {
    shared: Arc<Shared>,
    watchdog: Option<JoinHandle<()>>,
    signals: Option<(JoinHandle<()>, Pthread)>,
    old_mask: SigSet,
    _not_send: PhantomData<*const ()>,
}

impl Supervisor {
    /// Blocks the stop signals in this thread and starts the two helper threads.
    pub fn start() -> Result<Supervisor> {
        let mut set = SigSet::empty();
        for s in STOP {
            set.add(s);
        }
        set.add(WAKE);
        let old_mask = set
            .thread_swap_mask(SigmaskHow::SIG_BLOCK)
            .context("pthread_sigmask")?;
        let shared = Arc::new(Shared::default());
        let mut sup = Supervisor {
            shared: shared.clone(),
            watchdog: None,
            signals: None,
            old_mask,
            _not_send: PhantomData,
        };

        let sh = shared.clone();
        sup.watchdog = Some(
            std::thread::Builder::new()
                .name("bench-watchdog".into())
                .spawn(move || watchdog(&sh))
                .context("spawn watchdog thread")?,
        );

        let sh = shared;
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("bench-signals".into())
            .spawn(move || {
                let _ = tx.send(pthread_self());
                loop {
                    let Ok(sig) = set.wait() else { continue };
                    if sh.lock().shutdown {
                        return;
                    }
                    if sig != WAKE {
                        eprintln!("weft-bench: {sig}: stopping and cleaning up");
                        sh.interrupted.store(true, Ordering::SeqCst);
                        let mut st = sh.lock();
                        sh.kill_current(&mut st, Killed::Interrupted);
                    }
                }
            })
            .context("spawn signal thread")?;
        let tid = rx.recv().context("signal thread did not start")?;
        sup.signals = Some((handle, tid));
        Ok(sup)
    }

    /// Whether a stop signal has arrived.
    pub fn interrupted(&self) -> bool {
        self.shared.interrupted.load(Ordering::SeqCst)
    }

    /// A cloneable handle for the thread that spawns the plugins.
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
}

fn watchdog(sh: &Shared) {
    let mut st = sh.lock();
    loop {
        if st.shutdown {
            return;
        }
        st = match st.current {
            None => sh.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some((pid, deadline)) => {
                let now = Instant::now();
                if now >= deadline {
                    eprintln!("weft-bench: plugin process {pid} timed out; killing it");
                    sh.kill_current(&mut st, Killed::Timeout);
                    st
                } else {
                    sh.wake
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            }
        };
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.watchdog.take() {
            let _ = h.join();
        }
        if let Some((h, tid)) = self.signals.take() {
            // Thread-directed, so only the sigwait thread sees it.
            if pthread_kill(tid, WAKE).is_ok() {
                let _ = h.join();
            }
        }
        // A stop signal that arrived after the signal thread exited stays
        // pending and takes its default effect here, which is what the user
        // asked for: cleanup has already run.
        let _ = self.old_mask.thread_set_mask();
    }
}
