//! The lab's JSON line per probe.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use weft_model::Protocol;

use crate::prober::{ProbeResult, Target};
use crate::protocol::{parse_protocol, protocol_name};

/// One line of `weftctl lab probe` output:
/// `{"from":"x/a","to":"y/b","address":"10.…","port":80,"protocol":"TCP","connected":true}`,
/// with `"unsupported":true` added only for a protocol this kernel cannot
/// probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// The client pod, `namespace/name`.
    pub from: String,
    /// The server pod or Service, `namespace/name`.
    pub to: String,
    /// Destination address.
    pub address: IpAddr,
    /// Destination port.
    pub port: u16,
    /// Protocol, upper-case in JSON (`TCP`, `UDP`, `SCTP`).
    #[serde(serialize_with = "ser_protocol", deserialize_with = "de_protocol")]
    pub protocol: Protocol,
    /// Whether the echo came back.
    pub connected: bool,
    /// The protocol cannot be probed here (neither pass nor block).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unsupported: bool,
}

impl ProbeRecord {
    /// The record for `result` of probing `target` between two named pods.
    pub fn new(
        from: impl Into<String>,
        to: impl Into<String>,
        target: &Target,
        result: &ProbeResult,
    ) -> ProbeRecord {
        ProbeRecord {
            from: from.into(),
            to: to.into(),
            address: target.address,
            port: target.port,
            protocol: target.protocol,
            connected: result.connected,
            unsupported: result.unsupported,
        }
    }

    /// The record as one JSON line (without the newline).
    pub fn to_json_line(&self) -> String {
        // Serializing plain strings, numbers and bools cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn ser_protocol<S: Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(protocol_name(*p))
}

fn de_protocol<'de, D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
    let text = String::deserialize(d)?;
    parse_protocol(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown protocol {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(protocol: Protocol, connected: bool, unsupported: bool) -> ProbeRecord {
        ProbeRecord {
            from: "x/a".into(),
            to: "y/b".into(),
            address: "10.244.1.5".parse().unwrap(),
            port: 80,
            protocol,
            connected,
            unsupported,
        }
    }

    #[test]
    fn exact_lab_format() {
        assert_eq!(
            record(Protocol::Tcp, true, false).to_json_line(),
            r#"{"from":"x/a","to":"y/b","address":"10.244.1.5","port":80,"protocol":"TCP","connected":true}"#
        );
        assert_eq!(
            record(Protocol::Sctp, false, true).to_json_line(),
            r#"{"from":"x/a","to":"y/b","address":"10.244.1.5","port":80,"protocol":"SCTP","connected":false,"unsupported":true}"#
        );
    }

    #[test]
    fn round_trips_and_reads_v6() {
        for r in [
            record(Protocol::Udp, false, false),
            record(Protocol::Sctp, false, true),
        ] {
            let back: ProbeRecord = serde_json::from_str(&r.to_json_line()).unwrap();
            assert_eq!(back, r);
        }
        let line = r#"{"from":"x/a","to":"y/b","address":"fd00::5","port":53,"protocol":"UDP","connected":false}"#;
        let r: ProbeRecord = serde_json::from_str(line).unwrap();
        assert_eq!(r.address, "fd00::5".parse::<IpAddr>().unwrap());
        assert_eq!(r.to_json_line(), line);
    }

    #[test]
    fn built_from_a_probe() {
        let target = Target {
            netns: None,
            address: "10.244.1.5".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        };
        let result = ProbeResult {
            connected: true,
            ..ProbeResult::default()
        };
        assert_eq!(
            ProbeRecord::new("x/a", "y/b", &target, &result),
            record(Protocol::Tcp, true, false)
        );
    }
}
