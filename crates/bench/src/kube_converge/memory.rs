//! A process's memory as the kernel accounts it: `VmRSS` (resident now)
//! and `VmHWM` (the resident peak since it started) from
//! `/proc/<pid>/status`.

use anyhow::{Context, Result};
use serde::Serialize;
use weft_lab::procs;
use weft_lab::state::ProcRecord;

/// Resident memory of one process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rss {
    /// Resident set size now.
    pub vm_rss_kib: u64,
    /// Peak resident set size since the process started.
    pub vm_hwm_kib: u64,
}

impl Rss {
    /// Reads the process `proc` recorded; fails when it is gone or its PID
    /// now belongs to another process (its start time differs).
    pub fn of(what: &str, proc: &ProcRecord) -> Result<Rss> {
        if !procs::alive(proc) {
            anyhow::bail!("{what} (PID {}) is no longer running", proc.pid);
        }
        let path = format!("/proc/{}/status", proc.pid);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {path} of {what}"))?;
        parse_status(&text).with_context(|| format!("{path} of {what} has no VmRSS/VmHWM"))
    }
}

/// `VmRSS` and `VmHWM` from the text of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Option<Rss> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(Rss {
        vm_rss_kib: field("VmRSS")?,
        vm_hwm_kib: field("VmHWM")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_peak() {
        let text = "Name:\tweftd\nVmPeak:\t  900000 kB\nVmHWM:\t   41234 kB\nVmRSS:\t   40000 kB\nThreads:\t5\n";
        assert_eq!(
            parse_status(text),
            Some(Rss {
                vm_rss_kib: 40000,
                vm_hwm_kib: 41234
            })
        );
        assert_eq!(parse_status("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id() as i32;
        let me = ProcRecord {
            pid,
            start_time: procs::start_time(pid).unwrap(),
        };
        let rss = Rss::of("this test", &me).unwrap();
        assert!(rss.vm_hwm_kib >= rss.vm_rss_kib && rss.vm_rss_kib > 0);
    }
}
