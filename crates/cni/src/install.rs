//! Installing weft on a node: the plugin binary into the runtime's CNI
//! binary directory and the conflist into its configuration directory —
//! what the DaemonSet's init step does (`weftctl install-cni`).
//!
//! Each file is written next to its destination under a temporary name,
//! fsynced, and renamed over it: a container runtime scanning the
//! directories (containerd watches /etc/cni/net.d) sees the old file or the
//! new one, never half of one, and a node that loses power mid-install
//! keeps a working plugin.

use std::path::{Path, PathBuf};

use serde_json::Value;
use weft_fsutil::{Create, FsError, sync_dir, write_synced};

/// The plugin's file name in the CNI binary directory: the conflist's
/// `"type": "weft"` names it.
pub const PLUGIN_NAME: &str = "weft";

/// Why an installation failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Reading a source file failed.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The conflist is not one a runtime would accept with weft first.
    #[error("conflist {path}: {reason}")]
    Conflist {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing a destination failed.
    #[error("install: {0}")]
    Write(#[from] FsError),
    /// Renaming a temporary file over its destination failed.
    #[error("rename {from} to {to}: {source}")]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// What [`install`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The plugin binary's path.
    pub plugin: PathBuf,
    /// The conflist's path.
    pub conflist: PathBuf,
}

/// Installs `plugin` as `<bin_dir>/weft` (mode 0755) and `conflist` as
/// `<conf_dir>/<its file name>` (mode 0644), after checking that the
/// conflist is a valid list whose first plugin is weft. The directories are
/// created when missing. Nothing is written when the conflist is invalid.
pub fn install(
    plugin: &Path,
    conflist: &Path,
    bin_dir: &Path,
    conf_dir: &Path,
) -> Result<Installed, InstallError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| InstallError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let list = read(conflist)?;
    check_conflist(&list).map_err(|reason| InstallError::Conflist {
        path: conflist.to_path_buf(),
        reason,
    })?;
    let binary = read(plugin)?;
    let name = conflist.file_name().ok_or_else(|| InstallError::Conflist {
        path: conflist.to_path_buf(),
        reason: "has no file name".into(),
    })?;
    let installed = Installed {
        plugin: bin_dir.join(PLUGIN_NAME),
        conflist: conf_dir.join(name),
    };
    // The binary first: a conflist naming a plugin that is not there yet
    // would fail every pod the runtime starts in between.
    replace(&installed.plugin, &binary, 0o755)?;
    replace(&installed.conflist, &list, 0o644)?;
    Ok(installed)
}

/// Checks what a runtime needs of a conflist (`name`, `cniVersion`, a
/// non-empty `plugins` list of objects with a `type`) and that weft comes
/// first, where the interface-creating plugin belongs.
pub fn check_conflist(bytes: &[u8]) -> Result<(), String> {
    let list: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    for key in ["name", "cniVersion"] {
        if !list.get(key).is_some_and(Value::is_string) {
            return Err(format!("no string {key:?}"));
        }
    }
    let plugins = list
        .get("plugins")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or("no non-empty \"plugins\" list")?;
    for (i, p) in plugins.iter().enumerate() {
        if !p.get("type").is_some_and(Value::is_string) {
            return Err(format!("plugins[{i}] has no string \"type\""));
        }
    }
    match plugins[0]["type"].as_str() {
        Some(PLUGIN_NAME) => Ok(()),
        other => Err(format!(
            "the first plugin is {other:?}, not {PLUGIN_NAME:?} (weft creates the interface, so it comes first)"
        )),
    }
}

/// Writes `bytes` to a temporary file beside `dest`, fsyncs it and renames
/// it over `dest`, then fsyncs the directory.
fn replace(dest: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| FsError {
        op: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let file = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file}.weft-install-{}", std::process::id()));
    // A leftover of a crashed install with the same PID is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = write_synced(&tmp, bytes, mode, Create::New)
        .map_err(InstallError::from)
        .and_then(|()| {
            std::fs::rename(&tmp, dest).map_err(|source| InstallError::Rename {
                from: tmp.clone(),
                to: dest.to_path_buf(),
                source,
            })
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(sync_dir(dir)?)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const LIST: &str =
        r#"{"cniVersion":"1.1.0","name":"weft","plugins":[{"type":"weft"},{"type":"portmap"}]}"#;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weft-install-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn installs_both_files_atomically_with_their_modes() {
        let dir = scratch("ok");
        std::fs::write(dir.join("weft-bin"), b"\x7fELF plugin").unwrap();
        std::fs::write(dir.join("10-weft.conflist"), LIST).unwrap();
        let bin_dir = dir.join("opt/cni/bin");
        let conf_dir = dir.join("etc/cni/net.d");
        // An older version is replaced, not appended to.
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::write(bin_dir.join("weft"), b"old old old old").unwrap();

        let got = install(
            &dir.join("weft-bin"),
            &dir.join("10-weft.conflist"),
            &bin_dir,
            &conf_dir,
        )
        .unwrap();
        assert_eq!(got.plugin, bin_dir.join("weft"));
        assert_eq!(got.conflist, conf_dir.join("10-weft.conflist"));
        assert_eq!(std::fs::read(&got.plugin).unwrap(), b"\x7fELF plugin");
        assert_eq!(std::fs::read_to_string(&got.conflist).unwrap(), LIST);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&got.plugin), 0o755);
        assert_eq!(mode(&got.conflist), 0o644);
        // No temporary file is left beside them.
        for d in [&bin_dir, &conf_dir] {
            assert_eq!(std::fs::read_dir(d).unwrap().count(), 1, "{}", d.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_invalid_conflist_installs_nothing() {
        let dir = scratch("bad");
        std::fs::write(dir.join("weft-bin"), b"plugin").unwrap();
        std::fs::write(
            dir.join("l.conflist"),
            r#"{"cniVersion":"1.1.0","name":"x","plugins":[{"type":"bridge"},{"type":"weft"}]}"#,
        )
        .unwrap();
        let err = install(
            &dir.join("weft-bin"),
            &dir.join("l.conflist"),
            &dir.join("bin"),
            &dir.join("conf"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("first plugin"), "{err}");
        assert!(!dir.join("bin").exists() && !dir.join("conf").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn conflist_checks_name_what_is_wrong() {
        assert!(check_conflist(LIST.as_bytes()).is_ok());
        for (text, want) in [
            ("{", "invalid JSON"),
            (
                r#"{"cniVersion":"1.1.0","plugins":[{"type":"weft"}]}"#,
                "\"name\"",
            ),
            (
                r#"{"name":"w","plugins":[{"type":"weft"}]}"#,
                "\"cniVersion\"",
            ),
            (
                r#"{"name":"w","cniVersion":"1.1.0","plugins":[]}"#,
                "plugins",
            ),
            (
                r#"{"name":"w","cniVersion":"1.1.0","plugins":[{"x":1}]}"#,
                "plugins[0]",
            ),
        ] {
            let err = check_conflist(text.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn the_shipped_manifest_carries_a_valid_conflist() {
        let manifest = include_str!("../../../deploy/weft.yaml");
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(manifest)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let cm = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap")
            .expect("deploy/weft.yaml has a ConfigMap");
        let list = cm["data"]["10-weft.conflist"].as_str().unwrap();
        check_conflist(list.as_bytes()).unwrap();
    }
}
