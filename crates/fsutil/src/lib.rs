//! Durable file writes shared by weft's on-disk stores (IPAM reservations,
//! the file datastore, the node state): write a file and fsync it, fsync a
//! directory. Each store builds its own atomic replacement (temp file,
//! these, rename) and maps [`FsError`] into its own error type.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A failed file-system step: which operation, on which path.
#[derive(Debug)]
pub struct FsError {
    /// The operation: "create", "write", "fsync", "fsync directory".
    pub op: &'static str,
    /// The path it was applied to.
    pub path: PathBuf,
    /// The system's error.
    pub source: io::Error,
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn fail<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// How [`write_synced`] opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// The file must not exist yet (`O_EXCL`): a temp file named uniquely.
    New,
    /// Create or truncate.
    Truncate,
}

/// Writes `bytes` to `path` with permissions `mode` and fsyncs it, so that
/// a rename over the real file afterwards never exposes a torn or empty one.
pub fn write_synced(path: &Path, bytes: &[u8], mode: u32, create: Create) -> Result<(), FsError> {
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    match create {
        Create::New => options.create_new(true),
        Create::Truncate => options.create(true).truncate(true),
    };
    let mut file = options.open(path).map_err(fail("create", path))?;
    file.write_all(bytes).map_err(fail("write", path))?;
    file.sync_all().map_err(fail("fsync", path))
}

/// Makes a directory's entries (renames, new files, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_refuses_to_clobber_with_new() {
        let dir = std::env::temp_dir().join(format!("weft-fsutil-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        write_synced(&p, b"one", 0o600, Create::Truncate).unwrap();
        write_synced(&p, b"two", 0o600, Create::Truncate).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let e = write_synced(&p, b"three", 0o600, Create::New).unwrap_err();
        assert_eq!(e.op, "create");
        assert_eq!(e.source.kind(), io::ErrorKind::AlreadyExists);
        sync_dir(&dir).unwrap();
        assert_eq!(
            sync_dir(&dir.join("missing")).unwrap_err().op,
            "fsync directory"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
