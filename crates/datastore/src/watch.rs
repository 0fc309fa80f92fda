//! Waking readers when a transaction commits.
//!
//! Every transaction ends by renaming a new `<root>/revision` into place,
//! so one inotify watch on the root directory sees every commit, however
//! many kind and namespace directories come and go below it. Status
//! writes do not touch the revision and wake nobody.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, Result};
use crate::fsio::{self, REVISION_FILE};

/// How long the watcher waits for a burst of commits to end before it
/// reports them as one change.
const COALESCE_QUIET: Duration = Duration::from_millis(5);
/// The longest it keeps coalescing: under a steady stream of commits the
/// reader must still get to run.
const COALESCE_MAX: Duration = Duration::from_millis(100);

/// Waits for commits to a datastore directory.
#[derive(Debug)]
pub struct Watcher {
    root: PathBuf,
    inotify: Inotify,
    buffer: Vec<u8>,
}

impl Watcher {
    /// Watches `root` (created if missing, so that an agent may start
    /// before anything was applied). Changes committed before this call
    /// are not reported: read the store after creating the watcher.
    pub fn new(root: impl AsRef<Path>) -> Result<Watcher> {
        let root = root.as_ref().to_owned();
        fsio::create_dirs(&root)?;
        let watch_err = |op| {
            let root = root.clone();
            move |source| Error::Watch {
                op,
                path: root,
                source,
            }
        };
        let inotify = Inotify::init().map_err(watch_err("inotify_init"))?;
        let mask = WatchMask::MOVED_TO
            | WatchMask::CLOSE_WRITE
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        inotify
            .watches()
            .add(&root, mask)
            .map_err(watch_err("add watch"))?;
        Ok(Watcher {
            root,
            inotify,
            buffer: vec![0; 4096],
        })
    }

    /// Waits until a transaction commits or `timeout` passes; `true` when
    /// something changed. A burst of commits is reported once: after the
    /// first, it waits until none came for a few milliseconds (at most
    /// 100 ms). Callers still resync periodically (level-triggered), and
    /// any doubt (queue overflow, the directory moved) reports a change.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !self.readable(remaining)? {
                return Ok(false);
            }
            if self.drain()? {
                break;
            }
            if remaining.is_zero() {
                return Ok(false);
            }
        }
        let burst_end = Instant::now() + COALESCE_MAX;
        while Instant::now() < burst_end && self.readable(COALESCE_QUIET)? {
            self.drain()?;
        }
        Ok(true)
    }

    /// Polls the inotify descriptor for up to `timeout`.
    fn readable(&self, timeout: Duration) -> Result<bool> {
        // Round up: a sub-millisecond remainder must not become a busy loop.
        let millis = timeout.as_micros().div_ceil(1000);
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        loop {
            let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(n) => return Ok(n > 0),
                // A signal: poll again. Each retry may restart the
                // timeout, which only delays a periodic resync slightly.
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(Error::Watch {
                        op: "poll",
                        path: self.root.clone(),
                        source: errno.into(),
                    });
                }
            }
        }
    }

    /// Reads all queued events; `true` if any of them is a commit.
    fn drain(&mut self) -> Result<bool> {
        let mut changed = false;
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(changed),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Watch {
                        op: "read events",
                        path: self.root.clone(),
                        source,
                    });
                }
            };
            for event in events {
                let doubt = EventMask::Q_OVERFLOW
                    | EventMask::DELETE_SELF
                    | EventMask::MOVE_SELF
                    | EventMask::IGNORED;
                if event.mask.intersects(doubt) || event.name == Some(OsStr::new(REVISION_FILE)) {
                    changed = true;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
