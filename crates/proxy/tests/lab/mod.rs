//! The kernel tests' little cluster: a node namespace and pod namespaces
//! attached like the plugin attaches pods (a veth each, /32 and /128
//! addresses, a host route per pod), echo servers in the pods, and the
//! compiled table loaded into the node. Every namespace is a `weft…` one of
//! weft_testkit, removed on drop, also when a test fails.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use weft_model::{EndpointSlice, Service};
use weft_probe::{ProbeOpts, ProbeResult, Protocol, ServeOpts, Server, Target, probe_many};
use weft_proxy::{Ruleset, compile, render_delta, render_full};
use weft_testkit::{NetNs, veth_between};

use crate::support::node;

/// One pod: its name, addresses and namespace.
pub struct PodNs {
    pub name: &'static str,
    pub v4: &'static str,
    pub v6: &'static str,
    pub ns: NetNs,
}

/// The node and its pods (fields drop in order: servers stop before the
/// namespaces go).
pub struct Lab {
    servers: Vec<Server>,
    pub pods: Vec<PodNs>,
    /// A client outside the cluster, on a link of its own to the node
    /// (`192.168.60.2`, the node being `192.168.60.1`).
    pub external: NetNs,
    pub node: NetNs,
    loaded: Option<Ruleset>,
}

/// The pods' IPv4 gateway (the plugin's fixed link-local one).
const GATEWAY: &str = "169.254.1.1";

/// The pods: three servers (`c` serves "http" on another number, as a
/// second version of the workload may) and a client.
const PODS: [(&str, &str, &str, Option<u16>); 4] = [
    ("a", "10.244.1.11", "fd00:244:1::11", Some(8080)),
    ("b", "10.244.1.12", "fd00:244:1::12", Some(8080)),
    ("c", "10.244.1.13", "fd00:244:1::13", Some(8081)),
    ("client", "10.244.1.20", "fd00:244:1::20", None),
];

impl Lab {
    pub fn new() -> Lab {
        let node = NetNs::new("px").unwrap();
        for setting in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            sysctl(&node, setting);
        }
        // The node's own address (NodePorts, masquerade source), on
        // loopback: it needs no link of its own.
        node.ip(&["addr", "add", "192.168.50.2/32", "dev", "lo"])
            .unwrap();
        node.ip(&["addr", "add", "fd50::2/128", "dev", "lo"])
            .unwrap();
        let external = NetNs::new("pxx").unwrap();
        veth_between(&node, "weftpxext", &external, "eth0").unwrap();
        node.ip(&["addr", "add", "192.168.60.1/24", "dev", "weftpxext"])
            .unwrap();
        external
            .ip(&["addr", "add", "192.168.60.2/24", "dev", "eth0"])
            .unwrap();
        external
            .ip(&["route", "add", "default", "via", "192.168.60.1"])
            .unwrap();
        let mut lab = Lab {
            servers: Vec::new(),
            pods: Vec::new(),
            external,
            node,
            loaded: None,
        };
        for (i, (name, v4, v6, port)) in PODS.into_iter().enumerate() {
            let pod = NetNs::new("pxp").unwrap();
            let host_if = format!("weftpx{i}");
            veth_between(&lab.node, &host_if, &pod, "eth0").unwrap();
            pod.ip(&["addr", "add", &format!("{v4}/32"), "dev", "eth0"])
                .unwrap();
            pod.ip(&["addr", "add", &format!("{v6}/128"), "dev", "eth0", "nodad"])
                .unwrap();
            // IPv4 as the plugin attaches pods: a link-local gateway that
            // the pod reaches through a static neighbour entry for the
            // host side (proxy ARP would need a node route to every
            // Service address). IPv6: the host side's fe80::1.
            let mac = lab
                .node
                .ip(&["-br", "link", "show", "dev", &host_if])
                .unwrap();
            let mac = mac.split_whitespace().nth(2).unwrap().to_owned();
            pod.ip(&["route", "add", GATEWAY, "dev", "eth0", "scope", "link"])
                .unwrap();
            pod.ip(&["route", "add", "default", "via", GATEWAY, "dev", "eth0"])
                .unwrap();
            pod.ip(&[
                "neigh",
                "add",
                GATEWAY,
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])
            .unwrap();
            lab.node
                .ip(&["addr", "add", "fe80::1/64", "dev", &host_if, "nodad"])
                .unwrap();
            pod.ip(&[
                "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
            ])
            .unwrap();
            lab.node
                .ip(&["route", "add", &format!("{v4}/32"), "dev", &host_if])
                .unwrap();
            lab.node
                .ip(&["-6", "route", "add", &format!("{v6}/128"), "dev", &host_if])
                .unwrap();
            if let Some(port) = port {
                let opts = ServeOpts::new(vec![(Protocol::Tcp, port), (Protocol::Udp, port)]);
                lab.servers
                    .push(pod.run(|| Server::start(&opts)).unwrap().unwrap());
            }
            lab.pods.push(PodNs {
                name,
                v4,
                v6,
                ns: pod,
            });
        }
        lab
    }

    pub fn pod(&self, name: &str) -> &PodNs {
        self.pods.iter().find(|p| p.name == name).unwrap()
    }

    /// Compiles and loads: whole the first time, as a delta afterwards.
    pub fn apply(&mut self, services: &[Service], slices: &[EndpointSlice]) {
        let ruleset = compile(services, slices, &node());
        let text = match &self.loaded {
            None => render_full(&ruleset),
            Some(old) => render_delta(old, &ruleset).unwrap_or_default(),
        };
        nft(&self.node, &text);
        self.loaded = Some(ruleset);
        // Connections of earlier steps must not be counted again.
        let _ = self.node.exec("conntrack", &["-F"]);
    }

    /// `count` probes from `from` (a pod, or `external`) to `address:port`, sequentially (each a
    /// new connection from a new source port).
    pub fn probe(
        &self,
        from: &str,
        address: &str,
        port: u16,
        protocol: Protocol,
        count: usize,
        timeout: Duration,
    ) -> Vec<ProbeResult> {
        let ns = match from {
            "external" => &self.external,
            pod => &self.pod(pod).ns,
        };
        let target = Target {
            netns: Some(ns.path().to_path_buf()),
            address: address.parse().unwrap(),
            port,
            protocol,
        };
        let targets = vec![target; count];
        probe_many(&targets, &ProbeOpts { timeout }, 1)
    }

    /// Which endpoint (`ip:port` as the reply came from) served the node's
    /// tracked connections to `service_ip`, with counts.
    pub fn endpoints_hit(&self, service_ip: &str) -> BTreeMap<String, usize> {
        let family = if service_ip.contains(':') {
            "ipv6"
        } else {
            "ipv4"
        };
        let out = self
            .node
            .exec("conntrack", &["-L", "-f", family, "-d", service_ip])
            .unwrap();
        let mut hits = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // The reply tuple's source is the endpoint: the second `src=`
            // and `sport=` of the line.
            let field = |key: &str| {
                line.split_whitespace()
                    .filter_map(|w| w.strip_prefix(key))
                    .nth(1)
                    .map(str::to_owned)
            };
            if let (Some(ip), Some(port)) = (field("src="), field("sport=")) {
                let ip: IpAddr = ip.parse().unwrap();
                *hits.entry(format!("{ip}:{port}")).or_default() += 1;
            }
        }
        hits
    }
}

fn sysctl(ns: &NetNs, setting: &str) {
    ns.exec("sysctl", &["-q", "-w", setting]).unwrap();
}

/// Runs `nft -f -` with `script` inside `ns`.
fn nft(ns: &NetNs, script: &str) {
    crate::support::nft(ns, &["-f", "-"], script);
}
