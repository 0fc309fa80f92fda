//! Kernel tests (root): an echo server in one namespace, probes from
//! another, joined by a veth pair with IPv4 and IPv6 addresses. Every test
//! builds its own pair of `weft…` namespaces and removes them on drop.

use std::net::IpAddr;
use std::time::Duration;

use weft_probe::{ProbeOpts, ProbeResult, Protocol, ServeOpts, Server, Target, probe, probe_many};
use weft_testkit::{NetNs, privileged, veth_between};

const CLIENT_V4: &str = "10.99.0.1";
const SERVER_V4: &str = "10.99.0.2";
const CLIENT_V6: &str = "fd99::1";
const SERVER_V6: &str = "fd99::2";
const PORT: u16 = 8080;
const CLOSED: u16 = 9;

/// Two namespaces, a server running in one of them (fields drop in order:
/// the server stops before its namespace goes).
struct Pair {
    server: Option<Server>,
    client: NetNs,
    server_ns: NetNs,
}

impl Pair {
    fn new(tag: &str, ports: Vec<(Protocol, u16)>) -> Pair {
        let client = NetNs::new(&format!("{tag}c")).unwrap();
        let server_ns = NetNs::new(&format!("{tag}s")).unwrap();
        veth_between(&client, "c0", &server_ns, "s0").unwrap();
        for (ns, ifname, v4, v6) in [
            (&client, "c0", CLIENT_V4, CLIENT_V6),
            (&server_ns, "s0", SERVER_V4, SERVER_V6),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname])
                .unwrap();
            // nodad: the address is usable at once instead of after ~1 s.
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"])
                .unwrap();
        }
        let opts = ServeOpts::new(ports);
        let server = server_ns.run(|| Server::start(&opts)).unwrap().unwrap();
        Pair {
            server: Some(server),
            client,
            server_ns,
        }
    }

    fn target(&self, address: &str, port: u16, protocol: Protocol) -> Target {
        Target {
            netns: Some(self.client.path().to_path_buf()),
            address: address.parse().unwrap(),
            port,
            protocol,
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().unwrap();
        }
    }
}

fn opts(ms: u64) -> ProbeOpts {
    ProbeOpts {
        timeout: Duration::from_millis(ms),
    }
}

fn assert_connected(r: &ProbeResult, from: &str) {
    assert!(r.connected, "{r:?}");
    assert!(
        !r.unsupported && !r.inconclusive && r.error.is_none(),
        "{r:?}"
    );
    let peer = r.peer_seen.as_deref().unwrap();
    let ip: IpAddr = from.parse().unwrap();
    let want = match ip {
        IpAddr::V4(_) => format!("{ip}:"),
        IpAddr::V6(_) => format!("[{ip}]:"),
    };
    assert!(peer.starts_with(&want), "peer {peer:?}, want {want}…");
    let port: u16 = peer.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
}

fn assert_blocked(r: &ProbeResult) {
    assert!(!r.connected, "{r:?}");
    assert!(
        !r.unsupported && !r.inconclusive && r.error.is_some(),
        "{r:?}"
    );
    assert!(r.peer_seen.is_none(), "{r:?}");
}

#[test]
fn tcp_and_udp_echo_on_both_families_with_the_peer_address() {
    if !privileged("tcp_and_udp_echo_on_both_families_with_the_peer_address") {
        return;
    }
    let pair = Pair::new("pe", vec![(Protocol::Tcp, PORT), (Protocol::Udp, PORT)]);
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        for (to, from) in [(SERVER_V4, CLIENT_V4), (SERVER_V6, CLIENT_V6)] {
            let r = probe(&pair.target(to, PORT, protocol), &opts(2000));
            assert_connected(&r, from);
        }
    }
}

#[test]
fn closed_port_fails_fast() {
    if !privileged("closed_port_fails_fast") {
        return;
    }
    let pair = Pair::new("pc", vec![(Protocol::Tcp, PORT)]);
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        for to in [SERVER_V4, SERVER_V6] {
            let r = probe(&pair.target(to, CLOSED, protocol), &opts(3000));
            assert_blocked(&r);
            // RST / ICMP port unreachable, not the timeout.
            assert!(r.elapsed < Duration::from_secs(1), "{r:?}");
            let error = r.error.as_deref().unwrap();
            assert!(error.contains("refused"), "{error}");
        }
    }
}

#[test]
fn dropped_path_fails_after_the_timeout() {
    if !privileged("dropped_path_fails_after_the_timeout") {
        return;
    }
    let pair = Pair::new("pd", vec![(Protocol::Tcp, PORT), (Protocol::Udp, PORT)]);
    // IPv4: the server's answers go into a blackhole route. IPv6: weft's own
    // nftables table in the server namespace drops the requests.
    pair.server_ns
        .ip(&["route", "add", "blackhole", &format!("{CLIENT_V4}/32")])
        .unwrap();
    let ruleset = format!(
        "add table inet weft; \
         add chain inet weft input {{ type filter hook input priority 0; policy accept; }}; \
         add rule inet weft input ip6 saddr {CLIENT_V6} meta l4proto {{ tcp, udp }} th dport {PORT} drop"
    );
    pair.server_ns.exec("nft", &[&ruleset]).unwrap();
    let timeout = Duration::from_millis(600);
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        for to in [SERVER_V4, SERVER_V6] {
            let r = probe(&pair.target(to, PORT, protocol), &opts(600));
            assert_blocked(&r);
            assert!(r.elapsed >= timeout, "{r:?}");
            assert!(r.elapsed < timeout * 2, "{r:?}");
        }
    }
}

#[test]
fn sctp_is_unsupported_never_blocked() {
    if !privileged("sctp_is_unsupported_never_blocked") {
        return;
    }
    // The server skips SCTP on this kernel and still serves TCP.
    let pair = Pair::new("ps", vec![(Protocol::Sctp, PORT), (Protocol::Tcp, PORT)]);
    let sctp_listeners = pair
        .server
        .as_ref()
        .unwrap()
        .local_addrs()
        .iter()
        .filter(|(p, _)| *p == Protocol::Sctp)
        .count();
    let r = probe(&pair.target(SERVER_V4, PORT, Protocol::Sctp), &opts(1000));
    if sctp_listeners == 0 {
        assert!(r.unsupported && !r.connected && !r.inconclusive, "{r:?}");
    } else {
        // A kernel with SCTP: then it is a real probe like TCP.
        assert_connected(&r, CLIENT_V4);
    }
    let r = probe(&pair.target(SERVER_V4, PORT, Protocol::Tcp), &opts(1000));
    assert_connected(&r, CLIENT_V4);
}

#[test]
fn parallel_probes_are_all_correct_and_in_order() {
    if !privileged("parallel_probes_are_all_correct_and_in_order") {
        return;
    }
    let pair = Pair::new("pp", vec![(Protocol::Tcp, PORT), (Protocol::Udp, PORT)]);
    let kinds = [
        (SERVER_V4, CLIENT_V4, Protocol::Tcp),
        (SERVER_V6, CLIENT_V6, Protocol::Tcp),
        (SERVER_V4, CLIENT_V4, Protocol::Udp),
        (SERVER_V6, CLIENT_V6, Protocol::Udp),
    ];
    let mut targets = Vec::new();
    let mut expect = Vec::new();
    for i in 0..200 {
        let (to, from, protocol) = kinds[i % kinds.len()];
        // Every tenth goes to a closed TCP port: order mix-ups would show.
        let closed = i % 10 == 9 && protocol == Protocol::Tcp;
        targets.push(pair.target(to, if closed { CLOSED } else { PORT }, protocol));
        expect.push((from, closed));
    }
    let results = probe_many(&targets, &opts(3000), 64);
    assert_eq!(results.len(), targets.len());
    for (r, (from, closed)) in results.iter().zip(expect) {
        if closed {
            assert_blocked(r);
        } else {
            assert_connected(r, from);
        }
    }
}

#[test]
fn thousands_of_sequential_connections_with_bounded_threads() {
    if !privileged("thousands_of_sequential_connections_with_bounded_threads") {
        return;
    }
    let pair = Pair::new("pq", vec![(Protocol::Tcp, PORT), (Protocol::Udp, PORT)]);
    let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
    // The probes run on one thread inside the client namespace.
    let (before, after) = pair
        .client
        .run(|| {
            let before = threads();
            for i in 0..3000 {
                let (to, from, protocol) = match i % 3 {
                    0 => (SERVER_V4, CLIENT_V4, Protocol::Tcp),
                    1 => (SERVER_V6, CLIENT_V6, Protocol::Tcp),
                    _ => (SERVER_V4, CLIENT_V4, Protocol::Udp),
                };
                let target = Target {
                    netns: None,
                    ..pair.target(to, PORT, protocol)
                };
                assert_connected(&probe(&target, &opts(2000)), from);
            }
            (before, threads())
        })
        .unwrap();
    // The server's pool is sized by concurrency (at most 32 workers), not
    // by the number of connections.
    assert!(
        after <= before + 32,
        "threads grew from {before} to {after}"
    );
}
