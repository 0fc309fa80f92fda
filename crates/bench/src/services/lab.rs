//! The latency phases' namespaces: a node with the proxy table, a client
//! pod and a server pod attached like the plugin attaches pods (a veth
//! each, /32 addresses behind a link-local gateway, a /32 host route per
//! address on the node), and an echo server in the server pod. Every
//! namespace is a `weft…` one, removed on drop, also on failure.

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use weft_probe::{Protocol, ServeOpts, Server};
use weft_testkit::{NetNs, veth_between};

use super::synth::{CLIENT_IP, SERVER_IPS, TARGET_PORT};

/// The pods' IPv4 gateway (the plugin's fixed link-local one).
const GATEWAY: &str = "169.254.1.1";
/// A connect that takes longer than this is a failure, not a sample.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The node and its two pods. Fields drop in order: the server stops
/// before the namespaces go.
pub struct Lab {
    server: Server,
    /// The client pod.
    pub client: NetNs,
    /// The server pod (every address of [`SERVER_IPS`]).
    pub server_pod: NetNs,
    /// The node: the proxy table is loaded here.
    pub node: NetNs,
}

impl Lab {
    /// Builds the namespaces and starts the echo server.
    pub fn new() -> Result<Lab> {
        let node = NetNs::new("svcn").context("create the node namespace")?;
        node.exec("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"])
            .context("enable forwarding on the node")?;
        let client = NetNs::new("svcc").context("create the client pod")?;
        attach(&node, "weftsvc0", &client, &[CLIENT_IP])?;
        let server_pod = NetNs::new("svcs").context("create the server pod")?;
        attach(&node, "weftsvc1", &server_pod, &SERVER_IPS)?;
        let opts = ServeOpts {
            ports: vec![(Protocol::Tcp, TARGET_PORT)],
            bind_v4: true,
            bind_v6: false,
        };
        let server = server_pod
            .run(|| Server::start(&opts))
            .context("enter the server pod")?
            .context("start the echo server")?;
        Ok(Lab {
            server,
            client,
            server_pod,
            node,
        })
    }

    /// The echo server's port, for the report.
    pub fn server_port(&self) -> Option<u16> {
        self.server.local_addrs().first().map(|(_, a)| a.port())
    }

    /// Times `count` TCP connects from the client pod to `ip:port`, after
    /// `warmup` untimed ones: a tight loop on one thread inside the pod's
    /// namespace, timing only `connect` (the socket is closed untimed).
    pub fn connects(
        &self,
        ip: Ipv4Addr,
        port: u16,
        warmup: usize,
        count: usize,
    ) -> Result<Vec<Duration>> {
        let to = SocketAddrV4::new(ip, port).into();
        self.client
            .run(|| -> Result<Vec<Duration>> {
                let mut samples = Vec::with_capacity(count);
                for i in 0..warmup + count {
                    let started = Instant::now();
                    let stream = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)
                        .with_context(|| format!("connect {i} to {to} from the client pod"))?;
                    let took = started.elapsed();
                    drop(stream);
                    if i >= warmup {
                        samples.push(took);
                    }
                }
                Ok(samples)
            })
            .context("enter the client pod")?
    }
}

/// Attaches `pod` to `node` over a veth (`host_if` on the node side) with
/// `addresses` as /32s, a link-local default gateway reached through a
/// permanent neighbour entry, and a node route per address.
fn attach(node: &NetNs, host_if: &str, pod: &NetNs, addresses: &[&str]) -> Result<()> {
    veth_between(node, host_if, pod, "eth0")
        .with_context(|| format!("veth {host_if} to {}", pod.name()))?;
    let ip = |ns: &NetNs, args: &[&str]| -> Result<String> {
        ns.ip(args)
            .with_context(|| format!("ip {} in {}", args.join(" "), ns.name()))
    };
    for a in addresses {
        ip(pod, &["addr", "add", &format!("{a}/32"), "dev", "eth0"])?;
        ip(node, &["route", "add", &format!("{a}/32"), "dev", host_if])?;
    }
    let link = ip(node, &["-br", "link", "show", "dev", host_if])?;
    let mac = link
        .split_whitespace()
        .nth(2)
        .with_context(|| format!("no MAC address in {link:?}"))?
        .to_owned();
    ensure!(mac.contains(':'), "not a MAC address: {mac:?}");
    ip(
        pod,
        &["route", "add", GATEWAY, "dev", "eth0", "scope", "link"],
    )?;
    ip(
        pod,
        &["route", "add", "default", "via", GATEWAY, "dev", "eth0"],
    )?;
    ip(
        pod,
        &[
            "neigh",
            "add",
            GATEWAY,
            "lladdr",
            &mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    )?;
    Ok(())
}
