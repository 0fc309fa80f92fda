//! Heap in use by this process, from glibc's allocator statistics: what
//! the policy benchmark reads before and after building the agent's state
//! to get that state's size in bytes.
//!
//! `mallinfo2` sums every arena (so allocations made on other threads
//! count) and includes chunks served by `mmap`; it counts requested blocks
//! plus their allocator overhead, which is what the state really costs.
//! It is a glibc interface: on another C library the figure is absent,
//! not guessed.

/// Bytes handed out by the allocator and not yet freed (`None` where the
/// C library does not report it).
pub fn in_use() -> Option<u64> {
    imp::in_use()
}

/// The process's peak resident set (`VmHWM` in /proc/self/status), bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    pub(super) fn in_use() -> Option<u64> {
        // SAFETY: mallinfo2 takes no arguments, returns a plain struct by
        // value and only takes the arenas' own locks.
        #[allow(unsafe_code)]
        let info = unsafe { nix::libc::mallinfo2() };
        // uordblks: in-use bytes of the arenas; hblkhd: bytes in chunks
        // mapped on their own (large vectors and strings).
        Some((info.uordblks + info.hblkhd) as u64)
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn in_use() -> Option<u64> {
        None
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn a_live_allocation_is_counted() {
        // The figure is the process's: other test threads allocate and free
        // meanwhile, so a 64 MiB block must show, in one of a few tries (a
        // counter that does not count fails them all).
        let mut seen = Vec::new();
        let counted = (0..5).any(|_| {
            let before = in_use().expect("glibc reports heap use");
            let block = vec![1u8; 64 << 20];
            let after = in_use().expect("glibc reports heap use");
            drop(block);
            seen.push((before, after));
            after >= before + (48 << 20)
        });
        assert!(counted, "a 64 MiB block did not show: {seen:?}");
        assert!(peak_rss().is_some_and(|b| b > 0));
    }
}
