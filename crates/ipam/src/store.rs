//! The on-disk store of one network: the public face of the crate.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use crate::disk;
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::state::Stamp;
use crate::state::State;
use crate::types::{Allocation, Attachment, Reservation, is_cni_name};

/// Where the kernel publishes the ID of the current boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The reservations of one network on this node, in
/// `<data_dir>/<network>/`.
///
/// Every method opens its own lock file description, so one `Store` may be
/// shared by threads and any number of processes may open the same
/// directory: the flock serialises them. The lock is held only for the
/// read-modify-write of a single call.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    /// The directory is on a memory file system (tmpfs, as /run is): its
    /// fsync costs nothing, so [`Store::allocate_with`] commits inline
    /// instead of overlapping the commit with the caller's work.
    in_memory: bool,
}

impl Store {
    /// Opens the store of `network` under `data_dir`, creating
    /// `<data_dir>/<network>/` (mode 0700: it reveals which containers
    /// run) and its lock file if absent.
    ///
    /// `network` must be a CNI network name (`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
    /// because it becomes a directory name: no `/`, no `..`.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store> {
        if !is_cni_name(network) {
            return Err(Error::InvalidAttachment(format!(
                "network name {network:?} must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$"
            )));
        }
        let dir = data_dir.join(network);
        // Every ADD and DEL opens the store, and it nearly always exists:
        // one open of the lock file instead of creating and checking the
        // directories first.
        match disk::open_lock_file(&dir) {
            Ok(lock) => {
                let in_memory = disk::in_memory(&lock);
                return Ok(Store { dir, in_memory });
            }
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(data_dir).map_err(|e| Error::io("create directory", data_dir, e))?;
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => disk::sync_dir(data_dir)?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(Error::io("create directory", dir, e)),
        }
        let in_memory = disk::in_memory(&disk::open_lock_file(&dir)?);
        Ok(Store { dir, in_memory })
    }

    /// The store's directory, `<data_dir>/<network>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reserves one address per family of `pool` for `attachment`, or
    /// returns the one it already holds.
    ///
    /// A repeated call returns the same addresses with `created: false`
    /// and writes nothing, as long as they still fit the pool. If the pool
    /// changed, the reservation is replaced in the same commit, keeping
    /// each address that is still usable. Addresses come from each
    /// family's CIDRs in pool order, round-robin after the last one handed
    /// out, so a just-released address is not reused at once.
    ///
    /// Fails with [`Error::Exhausted`] if any family has no free address;
    /// then nothing is written, not even the other family's address.
    pub fn allocate(&self, attachment: &Attachment, pool: &Pool) -> Result<Allocation> {
        let (locked, state, allocation, changed) = self.decide(attachment, pool)?;
        if changed {
            locked.commit(&state)?;
        }
        Ok(allocation)
    }

    /// Takes the lock and decides the allocation: the new state, and
    /// whether it differs from what is on disk.
    fn decide(
        &self,
        attachment: &Attachment,
        pool: &Pool,
    ) -> Result<(disk::WriteLocked<'_>, State, Allocation, bool)> {
        attachment.validate()?;
        let locked = disk::lock_exclusive(&self.dir)?;
        let mut state = locked.read()?;
        let stamp = Stamp {
            boot_id: boot_id(),
            now: now(),
        };
        let (allocation, changed) = state.allocate(attachment, pool, stamp)?;
        Ok((locked, state, allocation, changed))
    }

    /// Like [`Store::allocate`], but runs `work` with the allocation while
    /// the commit's fsyncs are under way on another thread, and returns
    /// only once both are done.
    ///
    /// The plugin uses this to build the pod's interface while the disk
    /// makes the reservation durable: the two waits overlap instead of
    /// adding up. `work` runs after the addresses are decided and before
    /// they are durable, so when the commit fails its result is dropped,
    /// the error returned, and the caller must undo what `work` did. When
    /// the allocation itself fails, `work` never runs. On a memory file
    /// system there is no wait to hide: the commit runs first, inline (a
    /// second thread would cost more than it saves), and a failed commit
    /// also means `work` never runs.
    pub fn allocate_with<R>(
        &self,
        attachment: &Attachment,
        pool: &Pool,
        work: impl FnOnce(&Allocation) -> R,
    ) -> Result<(Allocation, R)> {
        let (locked, state, allocation, changed) = self.decide(attachment, pool)?;
        if !changed || self.in_memory {
            if changed {
                locked.commit(&state)?;
            }
            drop(locked);
            let out = work(&allocation);
            return Ok((allocation, out));
        }
        let (committed, out) = std::thread::scope(|s| {
            let commit = s.spawn(move || {
                let result = locked.commit(&state);
                // The lock is released as soon as the commit is durable,
                // not when `work` finishes.
                drop(locked);
                result
            });
            let out = work(&allocation);
            (commit.join().expect("commit thread does not panic"), out)
        });
        committed?;
        Ok((allocation, out))
    }

    /// Releases the addresses of `attachment` and returns what it held;
    /// `None`, writing nothing, when it held none (a repeated DEL).
    pub fn release(&self, attachment: &Attachment) -> Result<Option<Reservation>> {
        let locked = disk::lock_exclusive(&self.dir)?;
        let mut state = locked.read()?;
        let released = state.release(attachment);
        if released.is_some() {
            locked.commit(&state)?;
        }
        Ok(released)
    }

    /// The reservation of `attachment`, if any (for CNI CHECK).
    pub fn get(&self, attachment: &Attachment) -> Result<Option<Reservation>> {
        let state = disk::lock_shared(&self.dir)?.read()?;
        Ok(state.get(attachment).cloned())
    }

    /// Every reservation, oldest commit first.
    pub fn list(&self) -> Result<Vec<Reservation>> {
        Ok(disk::lock_shared(&self.dir)?.read()?.reservations)
    }

    /// The attachment that holds `ip`, if any (for the agent's sweep and
    /// for operators).
    pub fn owner(&self, ip: IpAddr) -> Result<Option<Reservation>> {
        let state = disk::lock_shared(&self.dir)?.read()?;
        Ok(state.reservations.into_iter().find(|r| r.ips.contains(&ip)))
    }

    /// CNI GC and the agent's sweep: releases, in one commit, every
    /// reservation for which `keep` is false and returns those. Writes
    /// nothing when all are kept.
    pub fn retain(&self, keep: impl FnMut(&Reservation) -> bool) -> Result<Vec<Reservation>> {
        let locked = disk::lock_exclusive(&self.dir)?;
        let mut state = locked.read()?;
        let released = state.retain(keep);
        if !released.is_empty() {
            locked.commit(&state)?;
        }
        Ok(released)
    }

    /// For CNI STATUS: the number of free addresses in each CIDR of `pool`,
    /// in pool order, after the current reservations. Sum per family to
    /// tell whether an ADD can succeed.
    pub fn free(&self, pool: &Pool) -> Result<Vec<(IpNet, u128)>> {
        let state = disk::lock_shared(&self.dir)?.read()?;
        Ok(state.free(pool))
    }
}

/// The current boot's ID, read once per process; `None` when the file is
/// absent or empty (not Linux, a restricted /proc), which must not stop
/// allocation.
fn boot_id() -> Option<&'static str> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            let id = fs::read_to_string(BOOT_ID_PATH).ok()?;
            let id = id.trim();
            (!id.is_empty()).then(|| id.to_owned())
        })
        .as_deref()
}

/// Seconds since the Unix epoch; 0 if the clock is before it, since a bad
/// clock must not stop allocation either.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
