//! The connectivity prober: one real round trip per target.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::{Deserialize, Serialize};
use socket2::Socket;
use weft_model::Protocol;
use weft_netlink::{Netns, NetnsGuard};

use crate::protocol::protocol_name;
use crate::socket::{is_local_failure, is_protocol_unsupported, new_socket};
use crate::wire::{EchoError, MAX_REPLY, is_complete, nonce, parse_reply};

/// Datagrams a UDP probe sends (the first and two retries) before it
/// decides the path is closed; UDP may lose any one of them.
const UDP_ATTEMPTS: u32 = 3;
/// Shortest wait handed to a socket timeout (zero means "forever" there).
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Where to probe, and from where.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Network namespace to probe from (e.g. `/run/netns/x`); `None` is the
    /// calling thread's own.
    pub netns: Option<PathBuf>,
    /// Destination address (a pod, a Service IP, ...).
    pub address: IpAddr,
    /// Destination port.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
}

impl Target {
    /// The destination as a socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// How to probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeOpts {
    /// Whole budget of one probe, from start to verdict. A dropped path
    /// takes exactly this long to report.
    pub timeout: Duration,
}

impl Default for ProbeOpts {
    fn default() -> ProbeOpts {
        ProbeOpts {
            timeout: Duration::from_secs(2),
        }
    }
}

/// What one probe found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The echo server answered with our nonce: a full round trip.
    pub connected: bool,
    /// The protocol cannot be probed on this kernel (SCTP): neither a pass
    /// nor a block.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unsupported: bool,
    /// The probe could not run at all (namespace, socket, threads, local
    /// resources): `connected: false` then says nothing about the network.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inconclusive: bool,
    /// Our address as the server saw it (`ip:port` / `[ip]:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_seen: Option<String>,
    /// Why the probe did not connect, naming the step that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time from start to verdict (serialized as fractional milliseconds).
    #[serde(rename = "elapsed_ms", with = "millis")]
    pub elapsed: Duration,
}

/// Probes one target. With a namespace, the probe runs on a fresh thread
/// that enters it, so the caller's thread never changes namespace.
pub fn probe(target: &Target, opts: &ProbeOpts) -> ProbeResult {
    match target.netns {
        None => probe_here(target, opts),
        Some(_) => probe_many(std::slice::from_ref(target), opts, 1)
            .pop()
            .unwrap_or_else(|| result_of(Verdict::Inconclusive("probe produced no result".into()))),
    }
}

/// Probes every target with at most `parallelism` probes in flight (at
/// least one); results come back in input order. Each distinct namespace
/// file is opened once.
pub fn probe_many(targets: &[Target], opts: &ProbeOpts, parallelism: usize) -> Vec<ProbeResult> {
    if targets.is_empty() {
        return Vec::new();
    }
    let mut namespaces: HashMap<&Path, Result<Netns, String>> = HashMap::new();
    for path in targets.iter().filter_map(|t| t.netns.as_deref()) {
        namespaces
            .entry(path)
            .or_insert_with(|| Netns::open(path).map_err(|e| e.to_string()));
    }
    let slots: Vec<Mutex<Option<ProbeResult>>> = targets.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = parallelism.clamp(1, targets.len());
    let spawn_error = std::thread::scope(|s| {
        let mut spawn_error = None;
        for i in 0..workers {
            let work = || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(target) = targets.get(i) else { return };
                    let ns = target.netns.as_deref().map(|p| &namespaces[p]);
                    let (result, thread_ok) = match ns {
                        None => (probe_here(target, opts), true),
                        Some(Err(e)) => (result_of(Verdict::Inconclusive(e.clone())), true),
                        Some(Ok(ns)) => probe_from(target, ns, opts),
                    };
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(result);
                    }
                    if !thread_ok {
                        // Stuck in a foreign namespace: this thread must not
                        // probe anything else.
                        return;
                    }
                }
            };
            if let Err(e) = std::thread::Builder::new()
                .name(format!("weft-probe-{i}"))
                .spawn_scoped(s, work)
            {
                spawn_error = Some(format!("start probe thread: {e}"));
                break;
            }
        }
        spawn_error
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner().ok().flatten().unwrap_or_else(|| {
                let why = spawn_error
                    .clone()
                    .unwrap_or_else(|| "probe thread panicked or stopped".into());
                result_of(Verdict::Inconclusive(why))
            })
        })
        .collect()
}

/// Runs a probe whose socket is created inside `ns`. Returns false as the
/// second value when the thread could not return to its own namespace.
fn probe_from(target: &Target, ns: &Netns, opts: &ProbeOpts) -> (ProbeResult, bool) {
    let start = Instant::now();
    let guard = match NetnsGuard::enter(ns) {
        Ok(g) => g,
        Err(e) => return (finish(start, Verdict::Inconclusive(e.to_string())), true),
    };
    // A socket stays in the namespace it was created in: create it inside,
    // leave, and do the I/O from our own namespace.
    let socket = open(target);
    if let Err(e) = guard.exit() {
        return (finish(start, Verdict::Inconclusive(e.to_string())), false);
    }
    (run(target, socket, opts, start), true)
}

/// Runs a probe from the calling thread's namespace.
fn probe_here(target: &Target, opts: &ProbeOpts) -> ProbeResult {
    let start = Instant::now();
    run(target, open(target), opts, start)
}

/// The outcome before it becomes a [`ProbeResult`].
enum Verdict {
    Connected { peer: String },
    Blocked(String),
    Unsupported(String),
    Inconclusive(String),
}

fn open(target: &Target) -> Result<Socket, Verdict> {
    let addr = target.socket_addr();
    let name = protocol_name(target.protocol);
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(Verdict::Inconclusive(format!(
            "invalid target {name} {addr}"
        )));
    }
    new_socket(target.protocol, &addr).map_err(|e| {
        if target.protocol == Protocol::Sctp && is_protocol_unsupported(&e) {
            Verdict::Unsupported(format!("create SCTP socket: {e} (no SCTP in this kernel)"))
        } else {
            Verdict::Inconclusive(format!("create {name} socket for {addr}: {e}"))
        }
    })
}

fn run(
    target: &Target,
    socket: Result<Socket, Verdict>,
    opts: &ProbeOpts,
    start: Instant,
) -> ProbeResult {
    let verdict = socket.and_then(|socket| {
        let deadline = start + opts.timeout;
        let step = Step {
            target,
            timeout: opts.timeout,
        };
        match target.protocol {
            Protocol::Tcp | Protocol::Sctp => stream_probe(socket, &step, deadline),
            Protocol::Udp => datagram_probe(socket, &step, deadline),
        }
    });
    finish(start, verdict.unwrap_or_else(|v| v))
}

fn finish(start: Instant, verdict: Verdict) -> ProbeResult {
    ProbeResult {
        elapsed: start.elapsed(),
        ..result_of(verdict)
    }
}

/// The result for a verdict, with `elapsed` left at zero.
fn result_of(verdict: Verdict) -> ProbeResult {
    let mut r = ProbeResult::default();
    match verdict {
        Verdict::Connected { peer } => {
            r.connected = true;
            r.peer_seen = Some(peer);
        }
        Verdict::Blocked(e) => r.error = Some(e),
        Verdict::Unsupported(e) => {
            r.unsupported = true;
            r.error = Some(e);
        }
        Verdict::Inconclusive(e) => {
            r.inconclusive = true;
            r.error = Some(e);
        }
    }
    r
}

/// Names failures after the step and the target.
struct Step<'a> {
    target: &'a Target,
    timeout: Duration,
}

impl Step<'_> {
    fn fail(&self, op: &str, e: &io::Error) -> Verdict {
        let what = format!(
            "{op} {} {}",
            protocol_name(self.target.protocol),
            self.target.socket_addr()
        );
        if matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ) {
            Verdict::Blocked(format!("{what}: no answer within {:?}", self.timeout))
        } else if is_local_failure(e) {
            Verdict::Inconclusive(format!("{what}: {e}"))
        } else {
            Verdict::Blocked(format!("{what}: {e}"))
        }
    }

    fn timed_out(&self, op: &str) -> Verdict {
        self.fail(op, &io::Error::from(io::ErrorKind::TimedOut))
    }
}

/// Time left until `deadline`, rounded up to whole milliseconds: poll and
/// socket timeouts count in milliseconds or jiffies, and rounding down would
/// end a wait (and report a drop) before the deadline.
fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    let ms = left.as_nanos().div_ceil(1_000_000);
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)).max(MIN_WAIT))
}

/// TCP (and SCTP): connect, send the nonce line, read the echo.
fn stream_probe(socket: Socket, step: &Step, deadline: Instant) -> Result<Verdict, Verdict> {
    connect_until(&socket, step.target.socket_addr(), deadline)
        .map_err(|e| step.fail("connect", &e))?;
    let mut stream = TcpStream::from(socket);
    let nonce = nonce();
    let wait = remaining(deadline).ok_or_else(|| step.timed_out("send"))?;
    stream
        .set_write_timeout(Some(wait))
        .and_then(|()| stream.write_all(format!("{nonce}\n").as_bytes()))
        .map_err(|e| step.fail("send", &e))?;
    let mut buf = vec![0u8; MAX_REPLY];
    let mut len = 0;
    while len < buf.len() && !is_complete(&buf[..len]) {
        let wait = remaining(deadline).ok_or_else(|| step.timed_out("receive echo"))?;
        stream
            .set_read_timeout(Some(wait))
            .map_err(|e| step.fail("receive echo", &e))?;
        match stream.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(step.fail("receive echo", &e)),
        }
    }
    match parse_reply(&nonce, &buf[..len]) {
        Ok(peer) => Ok(Verdict::Connected { peer }),
        Err(e) => Err(echo_failed(step, &e)),
    }
}

/// A stream connect that gives up exactly at `deadline`, never before it
/// (a poll that wakes early just polls again), so a dropped path is
/// reported only after the whole timeout.
fn connect_until(socket: &Socket, addr: SocketAddr, deadline: Instant) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => return socket.set_nonblocking(false),
        Err(e) if e.raw_os_error() == Some(Errno::EINPROGRESS as i32) => {}
        Err(e) => return Err(e),
    }
    loop {
        let wait = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
        let wait = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, wait) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(e.into()),
        }
    }
    // Writable means the handshake ended; SO_ERROR says how.
    match socket.take_error()? {
        Some(e) => Err(e),
        None => socket.set_nonblocking(false),
    }
}

/// UDP: a connected socket (so ICMP port unreachable surfaces as
/// ECONNREFUSED at once), the nonce datagram sent up to [`UDP_ATTEMPTS`]
/// times, the remaining budget spread evenly over the attempts left.
fn datagram_probe(socket: Socket, step: &Step, deadline: Instant) -> Result<Verdict, Verdict> {
    socket
        .connect(&step.target.socket_addr().into())
        .map_err(|e| step.fail("connect", &e))?;
    let socket = UdpSocket::from(socket);
    let nonce = nonce();
    let mut buf = vec![0u8; MAX_REPLY];
    let mut foreign = None;
    for attempt in 0..UDP_ATTEMPTS {
        let Some(left) = remaining(deadline) else {
            break;
        };
        let attempt_deadline = Instant::now() + left / (UDP_ATTEMPTS - attempt);
        socket
            .send(format!("{nonce}\n").as_bytes())
            .map_err(|e| step.fail("send", &e))?;
        while let Some(wait) = remaining(attempt_deadline) {
            socket
                .set_read_timeout(Some(wait))
                .map_err(|e| step.fail("receive echo", &e))?;
            match socket.recv(&mut buf) {
                Ok(len) => match parse_reply(&nonce, &buf[..len]) {
                    Ok(peer) => return Ok(Verdict::Connected { peer }),
                    // Not our echo (an old datagram, another service on
                    // the port): keep waiting for ours.
                    Err(e) => foreign = Some(e),
                },
                // Timeouts and signals: the loop condition decides whether
                // this attempt still has time.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(step.fail("receive echo", &e)),
            }
        }
    }
    Err(match foreign {
        Some(e) => echo_failed(step, &e),
        None => step.timed_out(&format!("{UDP_ATTEMPTS} datagrams to")),
    })
}

fn echo_failed(step: &Step, e: &EchoError) -> Verdict {
    Verdict::Blocked(format!(
        "echo from {} {}: {e}",
        protocol_name(step.target.protocol),
        step.target.socket_addr()
    ))
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `Duration` as fractional milliseconds in JSON: readable, and precise
/// to the nanosecond for the durations a probe takes.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(address: &str, port: u16) -> Target {
        Target {
            netns: None,
            address: address.parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn result_json() {
        let r = ProbeResult {
            connected: true,
            peer_seen: Some("10.0.0.1:4000".into()),
            elapsed: Duration::from_micros(1500),
            ..ProbeResult::default()
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"connected":true,"peer_seen":"10.0.0.1:4000","elapsed_ms":1.5}"#
        );
        assert_eq!(serde_json::from_str::<ProbeResult>(&json).unwrap(), r);
    }

    #[test]
    fn unusable_targets_are_inconclusive_not_blocked() {
        let opts = ProbeOpts::default();
        for t in [target("0.0.0.0", 80), target("10.0.0.1", 0)] {
            let r = probe(&t, &opts);
            assert!(!r.connected && r.inconclusive, "{r:?}");
        }
        let missing = Target {
            netns: Some("/nonexistent/weft-netns".into()),
            ..target("10.0.0.1", 80)
        };
        let r = probe(&missing, &opts);
        assert!(r.inconclusive, "{r:?}");
        assert!(r.error.unwrap().contains("/nonexistent/weft-netns"));
    }

    #[test]
    fn many_keeps_input_order() {
        let opts = ProbeOpts::default();
        let targets: Vec<Target> = (0..20)
            .map(|i| target(if i % 2 == 0 { "0.0.0.0" } else { "10.0.0.1" }, 0))
            .collect();
        let results = probe_many(&targets, &opts, 4);
        assert_eq!(results.len(), 20);
        for (t, r) in targets.iter().zip(&results) {
            assert!(
                r.error.as_ref().unwrap().contains(&t.address.to_string()),
                "{r:?}"
            );
        }
        assert!(probe_many(&[], &opts, 4).is_empty());
    }
}
