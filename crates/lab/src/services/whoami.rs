//! Which endpoint answered: a tiny responder every lab pod runs next to its
//! echo server (`lab serve --whoami NS/NAME`), in the spirit of
//! Kubernetes' `serve-hostname` test image and on its port. It answers
//! each TCP connection and each UDP datagram with one line,
//! `<pod> <peer>`: the pod's name and the client address as the pod saw
//! it, so Service tests can count endpoints and check source addresses
//! (preserved or masqueraded) in one exchange.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use weft_model::Protocol;

use crate::error::{LabError, Result};
use crate::netns;

/// The port the responder listens on, TCP and UDP (`serve-hostname`'s).
pub const WHOAMI_PORT: u16 = 9376;

/// What one exchange returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The pod that answered (`namespace/name`).
    pub pod: String,
    /// The client's address as that pod saw it.
    pub peer: SocketAddr,
}

/// Starts the responder on [`WHOAMI_PORT`] in the calling thread's
/// namespace, on `[::]` (both families) or `0.0.0.0` where IPv6 is off.
/// Runs on background threads for the life of the process.
pub fn spawn_server(name: String) -> Result<()> {
    let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), WHOAMI_PORT);
    let any4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), WHOAMI_PORT);
    let what = format!("listen on whoami port {WHOAMI_PORT}");
    let tcp = TcpListener::bind(any6)
        .or_else(|_| TcpListener::bind(any4))
        .map_err(LabError::io(what.clone()))?;
    let udp = UdpSocket::bind(any6)
        .or_else(|_| UdpSocket::bind(any4))
        .map_err(LabError::io(what))?;
    let tcp_name = name.clone();
    thread::spawn(move || {
        for mut conn in tcp.incoming().flatten() {
            if let Ok(peer) = conn.peer_addr() {
                // A client that went away costs nothing; keep serving.
                let _ = conn.write_all(line(&tcp_name, peer).as_bytes());
            }
        }
    });
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((_, peer)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(line(&name, peer).as_bytes(), peer);
        }
    });
    Ok(())
}

/// The answer line; v4-mapped peers (from the dual-stack socket) are shown
/// as the IPv4 addresses they are.
fn line(name: &str, peer: SocketAddr) -> String {
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    format!("{name} {}\n", SocketAddr::new(ip, peer.port()))
}

/// Parses an answer line.
pub fn parse_answer(text: &str) -> Option<Answer> {
    let (pod, peer) = text.trim().split_once(' ')?;
    Some(Answer {
        pod: pod.to_owned(),
        peer: peer.parse().ok()?,
    })
}

/// Asks `to` (a Service address and port mapped to [`WHOAMI_PORT`], or a
/// pod directly) from inside namespace `from`. With `local_port`, UDP
/// datagrams leave from that port, so repeated asks are one conntrack flow
/// (what a long-lived UDP client looks like).
pub fn ask(
    from: &str,
    to: SocketAddr,
    protocol: Protocol,
    local_port: Option<u16>,
    timeout: Duration,
) -> Result<Answer> {
    let what = format!("ask {protocol:?} {to} who answers, from netns {from}");
    netns::run_in(from, &what, || {
        let io = LabError::io(what.clone());
        let text = match protocol {
            Protocol::Udp => {
                let any: IpAddr = if to.is_ipv4() {
                    Ipv4Addr::UNSPECIFIED.into()
                } else {
                    Ipv6Addr::UNSPECIFIED.into()
                };
                let sock = UdpSocket::bind(SocketAddr::new(any, local_port.unwrap_or(0)))
                    .map_err(LabError::io(what.clone()))?;
                sock.set_read_timeout(Some(timeout))
                    .map_err(LabError::io(what.clone()))?;
                sock.send_to(b"who\n", to)
                    .map_err(LabError::io(what.clone()))?;
                let mut buf = [0u8; 512];
                let n = sock.recv(&mut buf).map_err(io)?;
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
            _ => {
                let mut conn =
                    TcpStream::connect_timeout(&to, timeout).map_err(LabError::io(what.clone()))?;
                conn.set_read_timeout(Some(timeout))
                    .map_err(LabError::io(what.clone()))?;
                let mut text = String::new();
                conn.read_to_string(&mut text).map_err(io)?;
                text
            }
        };
        parse_answer(&text)
            .ok_or_else(|| LabError::failed(what.clone(), format!("unexpected answer {text:?}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_the_pod_and_the_peer() {
        let mapped: SocketAddr = "[::ffff:10.244.1.5]:40000".parse().unwrap();
        let text = line("x/a", mapped);
        assert_eq!(text, "x/a 10.244.1.5:40000\n");
        let answer = parse_answer(&text).unwrap();
        assert_eq!(answer.pod, "x/a");
        assert_eq!(answer.peer, "10.244.1.5:40000".parse().unwrap());
        let v6 = line("x/b", "[fd00::5]:7".parse().unwrap());
        assert_eq!(parse_answer(&v6).unwrap().peer.port(), 7);
        assert!(parse_answer("garbage").is_none());
    }
}
