//! iperf3's JSON report (`iperf3 -J`), reduced to the figures a throughput
//! benchmark compares. Pure: the caller runs iperf3.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

/// One TCP test as the client saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IperfRun {
    /// What the client sent, in Gbit/s, over the test without the omitted
    /// warm-up seconds.
    pub sender_gbps: f64,
    /// What the server received, in Gbit/s (the figure to compare: bytes
    /// that arrived).
    pub receiver_gbps: f64,
    /// TCP retransmissions by the sender (iperf3 reports them on Linux
    /// only).
    pub retransmits: Option<u64>,
    /// Seconds the sender measured.
    pub seconds: f64,
    /// Parallel streams.
    pub streams: Option<u64>,
    /// CPU used by the client process, percent of one CPU summed over
    /// user and system.
    pub client_cpu_percent: Option<f64>,
    /// CPU used by the server process.
    pub server_cpu_percent: Option<f64>,
}

/// Reads a client's `iperf3 -J` output. iperf3 reports a failed test as
/// JSON with an `"error"` member (and, in 3.12, exit status 0 in some
/// cases), so that member is checked before anything else.
pub fn parse(json: &[u8]) -> Result<IperfRun> {
    let v: Value = serde_json::from_slice(json).context("iperf3 output is not JSON")?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3: {err}");
    }
    let protocol = v
        .pointer("/start/test_start/protocol")
        .and_then(Value::as_str);
    if protocol != Some("TCP") {
        bail!("iperf3: expected a TCP test, got {protocol:?}");
    }
    let end = v.get("end").context("iperf3 output has no \"end\"")?;
    let bps = |sum: &str| {
        end.pointer(&format!("/{sum}/bits_per_second"))
            .and_then(Value::as_f64)
            .filter(|b| b.is_finite() && *b >= 0.0)
            .with_context(|| format!("iperf3 output has no end.{sum}.bits_per_second"))
    };
    let cpu = |k: &str| {
        end.pointer(&format!("/cpu_utilization_percent/{k}"))
            .and_then(Value::as_f64)
    };
    Ok(IperfRun {
        sender_gbps: bps("sum_sent")? / 1e9,
        receiver_gbps: bps("sum_received")? / 1e9,
        retransmits: end.pointer("/sum_sent/retransmits").and_then(Value::as_u64),
        seconds: end
            .pointer("/sum_sent/seconds")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        streams: v
            .pointer("/start/test_start/num_streams")
            .and_then(Value::as_u64),
        client_cpu_percent: cpu("host_total"),
        server_cpu_percent: cpu("remote_total"),
    })
}

/// The version line of the installed iperf3 (`iperf 3.12`), if it runs.
pub fn version() -> Option<String> {
    let out = std::process::Command::new("iperf3")
        .arg("--version")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `iperf3 -c 127.0.0.1 -t 2 -O 1 -J` (iperf 3.12) inside
    /// a scratch namespace.
    const TCP: &str = include_str!("../tests/fixtures/iperf3-tcp.json");
    /// The same client against a port nobody listens on.
    const REFUSED: &str = include_str!("../tests/fixtures/iperf3-error.json");

    #[test]
    fn reads_the_sums_of_a_tcp_test() {
        let r = parse(TCP.as_bytes()).unwrap();
        assert!((r.sender_gbps - 15.520502063829556).abs() < 1e-9, "{r:?}");
        assert!(
            (r.receiver_gbps - 15.531_998_292_758_08).abs() < 1e-9,
            "{r:?}"
        );
        assert_eq!(r.retransmits, Some(14));
        assert!((r.seconds - 2.004526).abs() < 1e-9);
        assert_eq!(r.streams, Some(1));
        assert!((r.client_cpu_percent.unwrap() - 36.24068440546282).abs() < 1e-9);
        assert!((r.server_cpu_percent.unwrap() - 50.3958510314878).abs() < 1e-9);
    }

    #[test]
    fn an_error_member_is_an_error() {
        let err = format!("{:#}", parse(REFUSED.as_bytes()).unwrap_err());
        assert_eq!(
            err,
            "iperf3: unable to connect to server: Connection refused"
        );
    }

    #[test]
    fn rejects_what_is_not_a_tcp_result() {
        assert!(parse(b"").is_err());
        assert!(parse(b"iperf3: error").is_err());
        let udp = TCP.replace("\"TCP\"", "\"UDP\"");
        assert!(format!("{:#}", parse(udp.as_bytes()).unwrap_err()).contains("TCP"));
        let mut v: Value = serde_json::from_str(TCP).unwrap();
        v["end"]["sum_received"]
            .as_object_mut()
            .unwrap()
            .remove("bits_per_second");
        let err = format!("{:#}", parse(v.to_string().as_bytes()).unwrap_err());
        assert!(err.contains("sum_received"), "{err}");
    }
}
