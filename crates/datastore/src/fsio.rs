//! The datastore's files: the lock, atomic replacement, the revision file
//! and the clean-up of what crashed writers left.
//!
//! Every file is replaced whole: a temporary file in the same directory is
//! written, fsynced and renamed over the target, so readers (and a process
//! killed at any instant) see the old or the new content, never a mixture.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::error::{Error, Result};

/// The flock file; its content is never used.
pub(crate) const LOCK_FILE: &str = "lock";
/// The revision file: a decimal u64, the last committed transaction.
pub(crate) const REVISION_FILE: &str = "revision";
/// Marker in temporary file names (`.<target>.tmp-<pid>-<seq>`). Their
/// leading dot and missing `.json` suffix keep readers away from them.
const TMP_MARKER: &str = ".tmp-";

/// Distinguishes temporary files of threads of one process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A held flock on `<root>/lock`, released on drop.
pub(crate) struct Lock {
    _flock: Flock<File>,
}

/// Takes the lock: shared for readers (and status writers), exclusive for
/// object writers. A fresh open file description per call is what makes
/// flock serialise threads of one process as well as processes.
pub(crate) fn lock(root: &Path, exclusive: bool) -> Result<Lock> {
    let path = root.join(LOCK_FILE);
    let mut file = open_lock_file(&path)?;
    let arg = if exclusive {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockShared
    };
    loop {
        match Flock::lock(file, arg) {
            Ok(flock) => return Ok(Lock { _flock: flock }),
            // A signal interrupted the wait: wait again.
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(Error::io("flock", path, errno.into())),
        }
    }
}

/// Opens the lock file read-only (flock needs no write access), creating
/// it first if needed. Read-only matters: closing a file opened for writing
/// raises an inotify `CLOSE_WRITE` in the root, and every lock would wake
/// every watcher.
fn open_lock_file(path: &Path) -> Result<File> {
    match File::open(path) {
        Ok(file) => return Ok(file),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("open lock file", path, e)),
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io("create lock file", path, e))?;
    File::open(path).map_err(|e| Error::io("open lock file", path, e))
}

/// Replaces `path` atomically with `bytes`: temporary file, fsync, rename.
/// The caller fsyncs the directory once per transaction (see
/// [`sync_dir`]) rather than once per file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let result = write_synced(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e)));
    if result.is_err() {
        // Best effort: the next Datastore::open removes it anyway.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `value` as pretty JSON (hand-readable, as manifests are) with
/// [`write_atomic`].
pub(crate) fn write_json(path: &Path, value: &Value, what: &str) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Encode {
        key: what.to_owned(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    path.with_file_name(format!(".{name}{TMP_MARKER}{pid}-{seq}"))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    weft_fsutil::write_synced(path, bytes, 0o644, weft_fsutil::Create::New).map_err(fs_error)
}

/// Makes a directory's entries (renames, new files, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    weft_fsutil::sync_dir(dir).map_err(fs_error)
}

fn fs_error(e: weft_fsutil::FsError) -> Error {
    Error::io(e.op, e.path, e.source)
}

/// Creates a directory and its parents, fsyncing the parents of every
/// directory it creates so that the new entries survive a crash.
pub(crate) fn create_dirs(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another writer (status, open) raced us to it.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io("create directory", dir, e)),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// The committed revision; a missing file is revision 0 (a fresh store).
pub(crate) fn read_revision(root: &Path) -> Result<u64> {
    let path = root.join(REVISION_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|e| Error::Corrupt {
            path,
            reason: format!("revision {:?}: {e}", text.trim()),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Commits a transaction: writes the new revision and fsyncs the root.
/// Watchers wake on this rename, so it comes after every object file.
pub(crate) fn write_revision(root: &Path, revision: u64) -> Result<()> {
    write_atomic(
        &root.join(REVISION_FILE),
        format!("{revision}\n").as_bytes(),
    )?;
    sync_dir(root)
}

/// Reads and decodes a JSON file; `None` when it does not exist.
pub(crate) fn read_json(path: &Path) -> Result<Option<Value>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: path.to_owned(),
                reason: format!("invalid JSON: {e}"),
            }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Removes a file; `false` when it did not exist.
pub(crate) fn remove_file(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Lists a directory's entries sorted by name (deterministic snapshots);
/// a missing directory is empty.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Whether a directory entry is a temporary file of a write.
pub(crate) fn is_tmp(name: &str) -> bool {
    name.starts_with('.') && name.contains(TMP_MARKER)
}

/// Removes temporary files that crashed writers left, anywhere under
/// `dir`. Only called under the exclusive lock, when no write (object or
/// status) can be under way. Returns how many it removed.
pub(crate) fn remove_stale_tmp(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for (name, path) in sorted_entries(dir)? {
        let file_type = fs::symlink_metadata(&path)
            .map_err(|e| Error::io("stat", &path, e))?
            .file_type();
        if file_type.is_dir() {
            removed += remove_stale_tmp(&path)?;
        } else if is_tmp(&name) && remove_file(&path)? {
            tracing::warn!(path = %path.display(), "removed a crashed write's temporary file");
            removed += 1;
        }
    }
    Ok(removed)
}
