//! When a node's policy table gains something: `nft monitor` running inside
//! the node's namespace, each line it prints timestamped as it is read.
//!
//! An event stream, not polling `nft list`: a poll every few milliseconds
//! would both cost the node CPU the agent needs and round every latency up
//! to the poll interval. `nft` flushes every event line, so a line is read
//! within microseconds of the kernel's notification.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use weft_lab::netns;

/// One line `nft monitor` printed and when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When the reader thread got it.
    pub at: Instant,
    /// The line, without its newline.
    pub text: String,
}

/// `nft monitor` in one namespace; stopped (by its PID) on drop.
#[derive(Debug)]
pub struct NftMonitor {
    netns: String,
    child: Child,
    lines: Receiver<Line>,
    reader: Option<JoinHandle<()>>,
}

impl NftMonitor {
    /// Starts `nft monitor` inside `netns` (from a thread that entered it,
    /// so nothing else moves) and a thread that reads its lines.
    pub fn start(netns_name: &str) -> Result<NftMonitor> {
        let mut cmd = Command::new("nft");
        cmd.arg("monitor")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = netns::spawn_in(netns_name, &mut cmd)?;
        let stdout = child
            .stdout
            .take()
            .context("nft monitor's stdout was not piped")?;
        let (tx, lines) = channel();
        let reader = std::thread::Builder::new()
            .name("nft-monitor".into())
            .spawn(move || {
                for text in BufReader::new(stdout).lines() {
                    let Ok(text) = text else { break };
                    // Timestamp first: the send may wait for the receiver.
                    let line = Line {
                        at: Instant::now(),
                        text,
                    };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .context("spawn the nft monitor reader thread")?;
        Ok(NftMonitor {
            netns: netns_name.to_owned(),
            child,
            lines,
            reader: Some(reader),
        })
    }

    /// Reads lines (also those that arrived before the call) until one
    /// adds something to `table` containing `token`; returns when it was
    /// read, or `None` at `deadline`.
    pub fn wait_for(&self, table: &str, token: &str, deadline: Instant) -> Result<Option<Instant>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if adds_token(&line.text, table, token) => return Ok(Some(line.at)),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("nft monitor in {} stopped printing", self.netns)
                }
            }
        }
    }

    /// Drops every line read so far (what a setup step printed).
    pub fn drain(&self) {
        while self.lines.try_recv().is_ok() {}
    }
}

impl Drop for NftMonitor {
    fn drop(&mut self) {
        // Our own child, not reaped yet: its PID cannot have been reused.
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Whether `line` (as `nft monitor` prints it) adds an object of `table`
/// (`inet weft-policy`) that mentions `token` as a whole word: an address
/// or a port, bounded by anything but the characters that continue one
/// (`10.244.1.1` is not in `10.244.1.17`, port `10001` not in
/// `s_10001af`).
pub fn adds_token(line: &str, table: &str, token: &str) -> bool {
    let Some(rest) = line.strip_prefix("add ") else {
        return false;
    };
    if !contains_word(rest, table) {
        return false;
    }
    contains_word(rest, token)
}

fn contains_word(haystack: &str, word: &str) -> bool {
    let continues = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '_' | '-');
    haystack.match_indices(word).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + word.len()..].chars().next();
        !before.is_some_and(continues) && !after.is_some_and(continues)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "inet weft-policy";

    #[test]
    fn an_added_element_with_the_address_matches() {
        let line = "add element inet weft-policy s_66604fc794f1da5f_4 { 10.244.1.17 }";
        assert!(adds_token(line, T, "10.244.1.17"));
        assert!(!adds_token(line, T, "10.244.1.1"));
        assert!(!adds_token(line, T, "0.244.1.17"));
    }

    #[test]
    fn ports_match_as_words_only() {
        let rule =
            "add rule inet weft-policy pol ip saddr @s_1 meta l4proto tcp th dport 10001 accept";
        assert!(adds_token(rule, T, "10001"));
        assert!(!adds_token(rule, T, "1000"));
        let set = "add element inet weft-policy p_10001af { 10.0.0.1 . tcp . 10002 }";
        assert!(!adds_token(set, T, "10001"));
        assert!(adds_token(set, T, "10002"));
    }

    #[test]
    fn deletions_other_tables_and_comments_do_not_match() {
        assert!(!adds_token(
            "delete element inet weft-policy s { 10.244.1.17 }",
            T,
            "10.244.1.17"
        ));
        assert!(!adds_token(
            "add element inet weft-policyx s { 10.244.1.17 }",
            T,
            "10.244.1.17"
        ));
        assert!(!adds_token(
            "add element inet weft s { 10.244.1.17 }",
            T,
            "10.244.1.17"
        ));
        assert!(!adds_token(
            "# new generation 10001 by process 7 (weftd)",
            T,
            "10001"
        ));
    }
}
