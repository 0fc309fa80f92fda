//! Loading an nftables script into a benchmark namespace.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use weft_testkit::NetNs;

/// Loads `script` with `nft -f -` inside `ns` (one transaction) and returns
/// the wall time, process start included: the agent pays it too.
pub(crate) fn nft(ns: &NetNs, script: &str) -> Result<Duration> {
    let started = Instant::now();
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn nft -f - in {}", ns.name()))?;
    let written = child
        .stdin
        .take()
        .context("nft's stdin is piped")?
        .write_all(script.as_bytes());
    // Collect nft's verdict even when the write failed (nft exited early):
    // its stderr says why.
    let out = child
        .wait_with_output()
        .with_context(|| format!("wait for nft -f - in {}", ns.name()))?;
    let elapsed = started.elapsed();
    ensure!(
        out.status.success(),
        "nft -f - in {} ({} bytes): {}",
        ns.name(),
        script.len(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    written.with_context(|| format!("write the script to nft in {}", ns.name()))?;
    Ok(elapsed)
}
