//! Facts about the machine that go into every report: a figure means little
//! without the kernel and the CPUs it was measured on.

use serde_json::{Value, json};

/// CPUs available to this process (1 when unknown).
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Kernel release, CPUs available to this process, CPU model.
pub fn machine() -> Value {
    let kernel = nix::sys::utsname::uname()
        .ok()
        .map(|u| u.release().to_string_lossy().into_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    json!({ "kernel": kernel, "nproc": nproc(), "cpu": cpu })
}
