//! The state file's format, version 1.
//!
//! Kept apart from the in-memory [`State`] so that the file stays stable
//! while the code around it changes:
//!
//! ```json
//! {"version":1,
//!  "reservations":[{"containerID":"…","ifname":"eth0",
//!                   "ips":["10.244.1.5","fd00:10:244:1::5"],
//!                   "bootID":"…","created":1700000000}],
//!  "last":{"10.244.1.0/24":"10.244.1.5"}}
//! ```
//!
//! Unknown fields are ignored, so an older plugin can read a newer
//! version-1 file (dropping what it does not know when it rewrites it).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::state::State;
use crate::types::{Attachment, Reservation};

/// The only version this code reads and writes.
const VERSION: u32 = 1;

#[derive(Deserialize)]
struct Versioned {
    version: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    #[serde(default)]
    reservations: Vec<RecordV1>,
    #[serde(default)]
    last: BTreeMap<IpNet, IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct RecordV1 {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
    ips: Vec<IpAddr>,
    #[serde(rename = "bootID", default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
    created: u64,
}

/// Parses and checks a state file. The error is the reason it is corrupt.
///
/// Beyond syntax, it refuses what the allocator could never have written
/// and what would make it hand out an address twice: a reservation without
/// addresses or without an owner, two reservations for one attachment,
/// one address in two reservations.
pub(crate) fn decode(bytes: &[u8]) -> Result<State, String> {
    let versioned: Versioned = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match versioned.version {
        Some(VERSION) => {}
        Some(other) => {
            return Err(format!(
                "unsupported version {other} (this build reads {VERSION})"
            ));
        }
        None => return Err("no \"version\" field".into()),
    }
    let file: FileV1 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;

    let mut owners = HashSet::new();
    let mut addresses = HashSet::new();
    let mut reservations = Vec::with_capacity(file.reservations.len());
    for record in file.reservations {
        let attachment = Attachment::new(record.container_id, record.ifname);
        if attachment.container_id.is_empty() || attachment.ifname.is_empty() {
            return Err(format!(
                "reservation of {:?} has an empty containerID or ifname",
                record.ips
            ));
        }
        if record.ips.is_empty() {
            return Err(format!("reservation of {attachment:?} has no address"));
        }
        if !owners.insert(attachment.clone()) {
            return Err(format!("{attachment:?} has two reservations"));
        }
        for &ip in &record.ips {
            if !addresses.insert(ip) {
                return Err(format!("{ip} is reserved twice"));
            }
        }
        reservations.push(Reservation {
            attachment,
            ips: record.ips,
            boot_id: record.boot_id,
            created: record.created,
        });
    }
    Ok(State {
        reservations,
        last: file.last,
    })
}

/// Serialises `state`, indented for the operator who opens it, with a
/// final newline.
pub(crate) fn encode(state: &State) -> Vec<u8> {
    let file = FileV1 {
        version: VERSION,
        reservations: state
            .reservations
            .iter()
            .map(|r| RecordV1 {
                container_id: r.attachment.container_id.clone(),
                ifname: r.attachment.ifname.clone(),
                ips: r.ips.clone(),
                boot_id: r.boot_id.clone(),
                created: r.created,
            })
            .collect(),
        last: state.last.clone(),
    };
    let mut bytes =
        serde_json::to_vec_pretty(&file).expect("plain strings, numbers and maps always serialise");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"version":1,"reservations":[{"containerID":"c1","ifname":"eth0","ips":["10.244.1.5","fd00:10:244:1::5"],"bootID":"b-1","created":1700000000}],"last":{"10.244.1.0/24":"10.244.1.5","fd00:10:244:1::/64":"fd00:10:244:1::5"}}"#;

    #[test]
    fn reads_the_documented_format() {
        let state = decode(SAMPLE.as_bytes()).unwrap();
        assert_eq!(state.reservations.len(), 1);
        let r = &state.reservations[0];
        assert_eq!(r.attachment, Attachment::new("c1", "eth0"));
        assert_eq!(r.ips[1], "fd00:10:244:1::5".parse::<IpAddr>().unwrap());
        assert_eq!(r.boot_id.as_deref(), Some("b-1"));
        assert_eq!(r.created, 1_700_000_000);
        assert_eq!(
            state.last[&"10.244.1.0/24".parse().unwrap()],
            "10.244.1.5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn round_trips_and_matches_the_documented_format() {
        let state = decode(SAMPLE.as_bytes()).unwrap();
        let bytes = encode(&state);
        assert_eq!(decode(&bytes).unwrap(), state);
        let written: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let sample: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(written, sample);
    }

    #[test]
    fn optional_parts_may_be_missing() {
        let state = decode(br#"{"version":1}"#).unwrap();
        assert_eq!(state, State::default());
        let no_boot = r#"{"version":1,"reservations":[{"containerID":"c","ifname":"eth0","ips":["10.0.0.2"],"created":0,"future":true}]}"#;
        assert_eq!(
            decode(no_boot.as_bytes()).unwrap().reservations[0].boot_id,
            None
        );
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        let cases = [
            ("", "EOF"),
            ("{\"version\":1,\"reserv", "EOF"),
            ("[]", "invalid length"),
            ("{}", "no \"version\""),
            (r#"{"version":2}"#, "unsupported version 2"),
            (
                r#"{"version":1,"reservations":[{"containerID":"c","ifname":"eth0","ips":["10.0.0.300"],"created":0}]}"#,
                "invalid",
            ),
            (
                r#"{"version":1,"reservations":[{"containerID":"c","ifname":"eth0","ips":[],"created":0}]}"#,
                "no address",
            ),
            (
                r#"{"version":1,"reservations":[{"containerID":"","ifname":"eth0","ips":["10.0.0.2"],"created":0}]}"#,
                "empty",
            ),
            (
                r#"{"version":1,"reservations":[{"containerID":"a","ifname":"eth0","ips":["10.0.0.2"],"created":0},{"containerID":"a","ifname":"eth0","ips":["10.0.0.3"],"created":0}]}"#,
                "two reservations",
            ),
            (
                r#"{"version":1,"reservations":[{"containerID":"a","ifname":"eth0","ips":["10.0.0.2"],"created":0},{"containerID":"b","ifname":"eth0","ips":["10.0.0.2"],"created":0}]}"#,
                "reserved twice",
            ),
            (r#"{"version":1,"last":{"10.0.0.0":"10.0.0.2"}}"#, "invalid"),
        ];
        for (input, expected) in cases {
            let reason = decode(input.as_bytes()).expect_err(input);
            assert!(reason.contains(expected), "{input}: {reason}");
        }
    }
}
