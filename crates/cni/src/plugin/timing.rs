//! Phase timing for latency work, off unless asked for.
//!
//! With `WEFT_TIMING` set in the plugin's environment, an ADD writes one line
//! to stderr saying how long each of its phases took (microseconds since the
//! previous mark). A benchmark's wall time says how long an ADD took; this
//! says where the time went inside the process, without strace's overhead.
//! stderr is the plugin's log channel, so the protocol is unaffected.

use std::fmt::Write as _;
use std::time::Instant;

/// The environment variable that turns timing on.
pub const TIMING_ENV: &str = "WEFT_TIMING";

/// The marks of one invocation; does nothing when disabled.
#[derive(Debug)]
pub struct Timing {
    /// `None` when disabled: every method is then a no-op.
    state: Option<(Instant, String)>,
}

impl Timing {
    /// Enabled when [`TIMING_ENV`] is set (to anything).
    pub fn from_env() -> Timing {
        Timing {
            state: std::env::var_os(TIMING_ENV).map(|_| (Instant::now(), String::new())),
        }
    }

    /// Records that `phase` ended now.
    pub fn mark(&mut self, phase: &str) {
        if let Some((last, line)) = &mut self.state {
            let now = Instant::now();
            let _ = write!(line, " {phase}={}", now.duration_since(*last).as_micros());
            *last = now;
        }
    }

    /// Writes the line to stderr.
    pub fn report(self, verb: &str) {
        if let Some((_, line)) = self.state {
            eprintln!("weft timing {verb} (us):{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_each_phase_once_in_order() {
        let mut t = Timing {
            state: Some((Instant::now(), String::new())),
        };
        t.mark("reserve");
        t.mark("veth");
        let line = &t.state.as_ref().expect("enabled").1;
        let phases: Vec<&str> = line
            .split_whitespace()
            .map(|kv| kv.split_once('=').expect("phase=us").0)
            .collect();
        assert_eq!(phases, ["reserve", "veth"]);
    }

    #[test]
    fn disabled_records_nothing() {
        let mut t = Timing { state: None };
        t.mark("reserve");
        assert!(t.state.is_none());
    }
}
