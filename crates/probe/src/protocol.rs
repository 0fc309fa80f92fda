//! Protocol names as the lab's CLI and JSON spell them.

use crate::error::{Error, Result};
use weft_model::Protocol;

/// The protocol as Kubernetes and the lab's JSON spell it: `TCP`, `UDP`,
/// `SCTP`.
pub fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

/// Parses a protocol name in any case (`tcp`, `TCP`, `Udp`, ...).
pub fn parse_protocol(text: &str) -> Option<Protocol> {
    Protocol::parse(&text.to_ascii_uppercase())
}

/// Parses a port list such as `tcp/80,udp/80,sctp/9000` (the `--ports`
/// argument of `weftctl lab serve`). Whitespace around items is ignored;
/// duplicates are dropped, keeping the first.
pub fn parse_port_spec(spec: &str) -> Result<Vec<(Protocol, u16)>> {
    let mut out: Vec<(Protocol, u16)> = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let bad = |why: &str| Error::Invalid(format!("port {item:?} in {spec:?}: {why}"));
        let (proto, port) = item
            .split_once('/')
            .ok_or_else(|| bad("expected PROTOCOL/PORT such as tcp/80"))?;
        let proto =
            parse_protocol(proto.trim()).ok_or_else(|| bad("protocol must be tcp, udp or sctp"))?;
        let port: u16 = port
            .trim()
            .parse()
            .map_err(|_| bad("port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port must be a number from 1 to 65535"));
        }
        if !out.contains(&(proto, port)) {
            out.push((proto, port));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            assert_eq!(parse_protocol(protocol_name(p)), Some(p));
            assert_eq!(
                parse_protocol(&protocol_name(p).to_ascii_lowercase()),
                Some(p)
            );
        }
        assert_eq!(parse_protocol("icmp"), None);
    }

    #[test]
    fn port_spec() {
        assert_eq!(
            parse_port_spec("tcp/80, udp/80,SCTP/9000,tcp/80").unwrap(),
            vec![
                (Protocol::Tcp, 80),
                (Protocol::Udp, 80),
                (Protocol::Sctp, 9000)
            ]
        );
        for bad in ["", "tcp", "tcp/", "tcp/0", "tcp/65536", "icmp/1", "tcp/80,"] {
            let e = parse_port_spec(bad).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{bad:?}: {e}");
        }
    }
}
