//! The `--status-file`: after every pass, this node's outcome as one JSON
//! object, replaced atomically so a reader never sees half of it.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use weft_fsutil::Create;

use crate::source::{Applied, unix_secs};

/// Writes `{"node", "ready", "digest", "revision", "error"?, "time"}` to
/// `path`: digest and revision of the last snapshot a pass applied (kept
/// while passes fail), `error` only when this pass failed.
pub fn write(
    path: &Path,
    node: &str,
    applied: Option<&Applied>,
    error: Option<&str>,
) -> Result<()> {
    let mut status = json!({
        "node": node,
        "ready": error.is_none() && applied.is_some(),
        "digest": applied.map(|a| a.digest.as_str()),
        "revision": applied.map(|a| a.revision),
        "time": unix_secs(),
    });
    if let Some(e) = error {
        status["error"] = json!(e);
    }
    let mut bytes = serde_json::to_vec(&status).context("encode the status")?;
    bytes.push(b'\n');
    let name = path
        .file_name()
        .with_context(|| format!("status file {} has no file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    weft_fsutil::write_synced(&tmp, &bytes, 0o644, Create::Truncate)
        .with_context(|| format!("write status file {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_contract_fields() {
        let dir = std::env::temp_dir().join(format!("weftd-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status.json");
        let applied = Applied {
            revision: 7,
            digest: "0123456789abcdef".into(),
        };
        write(&path, "n1", Some(&applied), None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["node"], "n1");
        assert_eq!(v["ready"], true);
        assert_eq!(v["digest"], "0123456789abcdef");
        assert_eq!(v["revision"], 7);
        assert!(v["time"].as_u64().unwrap() > 0);
        assert!(v.get("error").is_none());

        write(&path, "n1", Some(&applied), Some("boom")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["ready"], false);
        assert_eq!(v["error"], "boom");
        assert_eq!(
            v["digest"], "0123456789abcdef",
            "the last applied digest stays"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
