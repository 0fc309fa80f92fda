//! Helpers shared by the kernel-tier benchmark tests.

use std::process::Command;

/// What must be unchanged in the root namespace: its links and addresses.
pub fn root_state() -> (String, String) {
    let out = |args: &[&str]| {
        let o = Command::new("ip").args(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    (out(&["-o", "link", "show"]), out(&["-o", "addr", "show"]))
}

/// Whether `test` can run: root, and nothing in `missing` (what else it
/// needs and is absent). Otherwise reports a loud SKIP — or panics under
/// WEFT_REQUIRE_PRIVILEGED, so a skip never counts as a pass in CI.
pub fn can_run(test: &str, missing: &[String]) -> bool {
    if !weft_testkit::privileged(test) {
        return false;
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("needs {}", missing.join(", "));
    if std::env::var_os(weft_testkit::REQUIRE_PRIVILEGED_ENV).is_some() {
        panic!("{test}: {why}");
    }
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    false
}
