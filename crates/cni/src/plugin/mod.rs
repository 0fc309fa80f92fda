//! The weft plugin's commands and its one exit point.

mod add;
mod check;
mod del;
mod errors;
mod gc;
pub mod naming;
pub mod node;
mod status;
mod timing;
mod veth;

use std::io::{Read, Write};

use serde_json::json;

use crate::wire::config::NetConf;
use crate::wire::env::{Command, Env};
use crate::wire::error::{CniError, INCOMPATIBLE_VERSION, IO_FAILURE};
use crate::wire::version::{CURRENT_VERSION, SUPPORTED_VERSIONS, Version};

/// What one invocation produced: bytes for stdout and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Everything the plugin prints on stdout (the protocol's channel).
    pub stdout: String,
    /// The process exit code: 0 on success, 1 with an error object.
    pub exit_code: i32,
}

/// The plugin's entry point: reads the process environment and stdin, runs
/// the command, prints the result or error JSON on stdout, and returns the
/// exit code. Nothing else writes to stdout.
pub fn run() -> i32 {
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => invoke(Env::from_process(), &stdin),
        Err(e) => failure(
            CniError::new(IO_FAILURE, format!("read stdin: {e}")),
            &stdin,
        ),
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout leaves nothing to report to; the exit code still says it.
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    outcome.exit_code
}

/// Runs one invocation given its environment and stdin.
pub fn invoke(env: Result<Env, CniError>, stdin: &[u8]) -> Outcome {
    match dispatch(env, stdin) {
        Ok(stdout) => Outcome {
            stdout,
            exit_code: 0,
        },
        Err(e) => failure(e, stdin),
    }
}

fn failure(e: CniError, stdin: &[u8]) -> Outcome {
    Outcome {
        stdout: e.to_json(&error_version(stdin)),
        exit_code: 1,
    }
}

/// The version to answer an error in: the request's, when it can be read.
fn error_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| CURRENT_VERSION.to_string())
}

fn dispatch(env: Result<Env, CniError>, stdin: &[u8]) -> Result<String, CniError> {
    let env = env?;
    if env.command == Command::Version {
        return Ok(
            json!({"cniVersion": CURRENT_VERSION, "supportedVersions": SUPPORTED_VERSIONS})
                .to_string(),
        );
    }
    let conf = NetConf::parse(stdin)?;
    let needs = |min: Version| {
        if conf.version < min {
            Err(CniError::new(
                INCOMPATIBLE_VERSION,
                format!(
                    "config version {} does not allow {}",
                    conf.cni_version,
                    env.command.as_str()
                ),
            ))
        } else {
            Ok(())
        }
    };
    match env.command {
        Command::Add => {
            let result = add::add(&env, &conf)?;
            Ok(result.to_json(&conf.cni_version)?.to_string())
        }
        Command::Del => del::del(&env, &conf).map(|()| String::new()),
        Command::Check => {
            needs(Version::CHECK)?;
            check::check(&env, &conf).map(|()| String::new())
        }
        Command::Status => {
            needs(Version::STATUS_GC)?;
            status::status(&conf).map(|()| String::new())
        }
        Command::Gc => {
            needs(Version::STATUS_GC)?;
            gc::gc(&conf).map(|()| String::new())
        }
        Command::Version => unreachable!("handled above"),
    }
}
