//! Network namespaces held open by file descriptor, and a per-thread guard
//! that enters one and always comes back.

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use nix::sys::stat::fstat;

use crate::error::{Error, Result};

/// The calling thread's own namespace. `/proc/self` would name the main
/// thread's, which differs from ours while a [`NetnsGuard`] is active.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// A network namespace held open by fd, so it stays valid (and is the same
/// namespace) for as long as this value lives, even if its bind mount goes.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens a namespace file such as `/run/netns/x` or `/proc/<pid>/ns/net`
    /// (what a runtime passes in `CNI_NETNS`). A missing path gives an error
    /// whose [`Error::is_not_found`] is true. The file is not checked to be a
    /// network namespace here; using a wrong one fails with EINVAL later.
    pub fn open(path: &Path) -> Result<Netns> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("open netns {}", path.display()), e))?;
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The network namespace of the calling thread.
    pub fn current() -> Result<Netns> {
        Netns::open(Path::new(THREAD_NETNS))
    }

    /// The namespace fd, e.g. for `IFLA_NET_NS_FD`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The path this namespace was opened from (for messages only: the path
    /// may since name another namespace, the fd does not).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether both fds refer to the same namespace. Namespace files are
    /// inodes on nsfs, so identity is (st_dev, st_ino).
    pub fn is_same_as(&self, other: &Netns) -> Result<bool> {
        let a = stat(self)?;
        let b = stat(other)?;
        Ok(a == b)
    }
}

/// (st_dev, st_ino) of a namespace fd.
fn stat(ns: &Netns) -> Result<(u64, u64)> {
    let st = fstat(ns.fd())
        .map_err(|e| Error::io(format!("fstat netns {}", ns.path.display()), e.into()))?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// While alive, the current thread is inside another network namespace; on
/// drop it is back in the one it came from.
///
/// setns is per thread, so the guard is `!Send`: moving it to another thread
/// would restore the wrong thread. Use it only for what must happen inside
/// the namespace — opening a netlink socket (which then stays bound to that
/// namespace) or opening files under /proc/sys/net — and drop it right away.
#[derive(Debug)]
pub struct NetnsGuard {
    /// The namespace to return to; `None` once [`NetnsGuard::exit`] did.
    prev: Option<Netns>,
    /// `*const ()` is neither Send nor Sync.
    _not_send: PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Enters `ns` on the calling thread, remembering the current namespace.
    pub fn enter(ns: &Netns) -> Result<NetnsGuard> {
        let prev = Netns::current()?;
        setns(ns.fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io(format!("setns {}", ns.path.display()), io::Error::from(e)))?;
        Ok(NetnsGuard {
            prev: Some(prev),
            _not_send: PhantomData,
        })
    }

    /// Returns to the original namespace and reports a failure instead of
    /// aborting (which is what drop has to do).
    pub fn exit(mut self) -> Result<()> {
        // Taking `prev` closes its fd when this returns (forgetting the guard
        // would leak one fd per use) and tells drop there is nothing left to
        // do: after a failure the caller has the error and decides.
        let prev = self.prev.take().expect("prev is only taken here");
        restore(&prev)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let Some(prev) = &self.prev else {
            return;
        };
        if let Err(e) = restore(prev) {
            // A thread left in the wrong namespace would apply every later
            // change (routes, addresses) to the wrong network; a crash is the
            // only safe outcome.
            eprintln!("weft-netlink: {e}; aborting rather than run in the wrong netns");
            std::process::abort();
        }
    }
}

fn restore(prev: &Netns) -> Result<()> {
    setns(prev.fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::io(
            format!("setns back to {}", prev.path.display()),
            io::Error::from(e),
        )
    })
}

/// Runs `f` with the calling thread inside `ns`, and returns to the original
/// namespace afterwards even if `f` fails.
pub fn in_netns<T>(ns: &Netns, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let guard = NetnsGuard::enter(ns)?;
    let out = f();
    guard.exit()?;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_netns_is_not_found() {
        let e = Netns::open(Path::new("/nonexistent/weft/netns")).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(e.to_string().contains("/nonexistent/weft/netns"), "{e}");
    }

    #[test]
    fn current_is_same_as_itself() {
        let a = Netns::current().unwrap();
        let b = Netns::current().unwrap();
        assert!(a.is_same_as(&b).unwrap());
    }
}
