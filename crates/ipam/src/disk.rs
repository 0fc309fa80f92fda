//! The store's files: the lock, the state file and its atomic replacement.
//!
//! Writers take `lock` exclusively for the whole read-modify-write; the
//! state file is only ever replaced by rename, so readers see the old or
//! the new content, never a mixture.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use weft_fsutil::Create;

use crate::error::{Error, Result};
use crate::schema;
use crate::state::State;

/// The flock file; its content is never used.
pub(crate) const LOCK_FILE: &str = "lock";
/// The state file.
pub(crate) const STATE_FILE: &str = "reservations.json";
/// Prefix of the temporary files a commit writes before renaming; the pid
/// follows.
pub(crate) const TMP_PREFIX: &str = "reservations.json.tmp-";

/// A held lock on a store directory; released on drop.
pub(crate) struct Locked<'a> {
    dir: &'a Path,
    _flock: Flock<File>,
}

/// A held exclusive lock: the only way to write the state file.
pub(crate) struct WriteLocked<'a>(Locked<'a>);

/// Takes the lock shared: for reads, which may run side by side.
pub(crate) fn lock_shared(dir: &Path) -> Result<Locked<'_>> {
    lock(dir, FlockArg::LockShared)
}

/// Takes the lock exclusively and removes what crashed writers left.
pub(crate) fn lock_exclusive(dir: &Path) -> Result<WriteLocked<'_>> {
    let locked = lock(dir, FlockArg::LockExclusive)?;
    remove_stale_tmp(dir)?;
    Ok(WriteLocked(locked))
}

/// Opens (creating if needed) the lock file. A fresh open file description
/// per call is what makes flock serialise threads of one process as well
/// as processes.
pub(crate) fn open_lock_file(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("open lock file", path, e))
}

/// Whether `file` lives on tmpfs, where fsync returns at once and nothing
/// survives a reboot. Unknown: no.
pub(crate) fn in_memory(file: &File) -> bool {
    use nix::sys::statfs::{TMPFS_MAGIC, fstatfs};
    fstatfs(file).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC)
}

fn lock(dir: &Path, arg: FlockArg) -> Result<Locked<'_>> {
    let mut file = open_lock_file(dir)?;
    loop {
        match Flock::lock(file, arg) {
            Ok(flock) => return Ok(Locked { dir, _flock: flock }),
            // A signal interrupted the wait; the plugin must not fail an
            // ADD for that.
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => {
                return Err(Error::io("lock", dir.join(LOCK_FILE), errno.into()));
            }
        }
    }
}

impl Locked<'_> {
    /// The current state; a missing state file is an empty store.
    pub(crate) fn read(&self) -> Result<State> {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => schema::decode(&bytes).map_err(|reason| Error::Corrupt { path, reason }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }
}

impl WriteLocked<'_> {
    /// The current state; see [`Locked::read`].
    pub(crate) fn read(&self) -> Result<State> {
        self.0.read()
    }

    /// Replaces the state file with `state`: write a temporary file, fsync
    /// it, rename it over the state file. A reader (or a process killed at
    /// any instant) sees the old or the new state, and after a power loss
    /// the file holds one of them in full, never a torn or empty one.
    ///
    /// The directory is deliberately not fsynced after the rename (that
    /// would be a second device flush on every ADD and DEL, about 0.3 ms
    /// here): the rename can be lost only together with the machine, and a
    /// power loss also destroys every pod network namespace of that boot,
    /// so a reservation that comes back or goes missing after it names a
    /// pod that no longer exists. Reservations carry the boot ID for the
    /// agent's sweep to release exactly those.
    pub(crate) fn commit(&self, state: &State) -> Result<()> {
        let dir = self.0.dir;
        let tmp = dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
        let result = write_synced(&tmp, &schema::encode(state)).and_then(|()| {
            let path = dir.join(STATE_FILE);
            fs::rename(&tmp, &path).map_err(|e| Error::io("rename", tmp.clone(), e))
        });
        if result.is_err() {
            // Best effort: the next writer removes it anyway.
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    weft_fsutil::write_synced(path, bytes, 0o600, Create::Truncate).map_err(fs_error)
}

/// Makes the directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    weft_fsutil::sync_dir(dir).map_err(fs_error)
}

fn fs_error(e: weft_fsutil::FsError) -> Error {
    Error::io(e.op, e.path, e.source)
}

/// Removes temporary files of commits that crashed before their rename.
/// Only called under the exclusive lock, when no commit can be under way.
fn remove_stale_tmp(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
        if !entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(TMP_PREFIX.as_bytes())
        {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove stale temporary file", path, e)),
        }
    }
    Ok(())
}
