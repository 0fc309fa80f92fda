//! Kernel tests (root): two "node" namespaces joined by a veth underlay, each
//! reconciled by the real [`NetlinkKernel`] from inside its namespace, and
//! traffic between the nodes' pod-CIDR gateway addresses.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use weft_agent::{
    AgentConfig, Backend, ClusterView, NetlinkKernel, Report, desired, observe_local, reconcile,
};
use weft_model::Node;
use weft_testkit::{NetNs, privileged, veth_between};

/// Two node namespaces on one underlay segment (192.168.77.0/24,
/// fd77::/64), removed on drop.
struct Cluster {
    nodes: [NetNs; 2],
    view: ClusterView,
}

fn model_node(name: &str, i: u8) -> Node {
    Node {
        name: name.to_string(),
        labels: BTreeMap::new(),
        pod_cidrs: vec![
            format!("10.244.{i}.0/24").parse().unwrap(),
            format!("fd00:10:244:{i}::/64").parse().unwrap(),
        ],
        addresses: vec![
            format!("192.168.77.{i}").parse().unwrap(),
            format!("fd77::{i}").parse().unwrap(),
        ],
        annotations: BTreeMap::new(),
    }
}

impl Cluster {
    fn new(tag: &str) -> Result<Cluster> {
        let a = NetNs::new(&format!("{tag}a"))?;
        let b = NetNs::new(&format!("{tag}b"))?;
        veth_between(&a, "eth0", &b, "eth0")?;
        for (ns, i) in [(&a, 1), (&b, 2)] {
            ns.ip(&["addr", "add", &format!("192.168.77.{i}/24"), "dev", "eth0"])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("fd77::{i}/64"),
                "dev",
                "eth0",
                "nodad",
            ])?;
        }
        let view = ClusterView {
            revision: 1,
            nodes: vec![model_node("n1", 1), model_node("n2", 2)],
            pods: Vec::new(),
        };
        Ok(Cluster {
            nodes: [a, b],
            view,
        })
    }

    fn cfg(i: usize, backend: Backend) -> AgentConfig {
        AgentConfig {
            backend,
            ..AgentConfig::new(format!("n{}", i + 1))
        }
    }

    /// Runs one agent pass for node `i` inside its namespace, as weftd does:
    /// observe, decide, reconcile; publishes its annotations into the view.
    fn reconcile(
        &mut self,
        i: usize,
        view: Option<&ClusterView>,
        backend: Backend,
    ) -> Result<Report> {
        let cfg = Cluster::cfg(i, backend);
        let view = view.cloned().unwrap_or_else(|| self.view.clone());
        let me = self.view.nodes[i].clone();
        let (report, annotations) = self.nodes[i].run(move || -> weft_agent::Result<_> {
            let mut kernel = NetlinkKernel::new()?;
            let local = observe_local(&mut kernel, &me)?;
            let want = desired(&view, &cfg, &local);
            let report = reconcile(&mut kernel, &want)?;
            Ok((report, want.annotations))
        })??;
        self.view.nodes[i].annotations = annotations;
        Ok(report)
    }

    /// Both nodes reconciled until each has seen the other's annotations.
    fn converge(&mut self, backend: Backend) -> Result<()> {
        for _ in 0..2 {
            self.reconcile(0, None, backend)?;
            self.reconcile(1, None, backend)?;
        }
        Ok(())
    }

    fn ping(&self, from: usize, src: &str, dst: &str) -> Result<()> {
        let v6 = if dst.contains(':') { "-6" } else { "-4" };
        self.nodes[from]
            .exec(
                "ping",
                &[v6, "-c", "2", "-i", "0.2", "-W", "2", "-I", src, dst],
            )
            .with_context(|| format!("ping {dst} from {src}"))
            .map(drop)
    }
}

#[test]
fn vxlan_between_two_nodes_and_reconcile_twice_is_zero() -> Result<()> {
    if !privileged("vxlan_between_two_nodes_and_reconcile_twice_is_zero") {
        return Ok(());
    }
    let mut c = Cluster::new("agvx")?;
    c.converge(Backend::Vxlan)?;
    c.ping(0, "10.244.1.1", "10.244.2.1")?;
    c.ping(1, "fd00:10:244:2::1", "fd00:10:244:1::1")?;

    for i in 0..2 {
        let again = c.reconcile(i, None, Backend::Vxlan)?;
        ensure!(
            again.changes() == 0,
            "node {i}: second reconcile changed {again:?}"
        );
    }
    let link = c.nodes[0].ip(&["-d", "link", "show", "weft.vxlan"])?;
    ensure!(
        link.contains("mtu 1450") && link.contains("vxlan id 1"),
        "{link}"
    );
    ensure!(
        link.contains("dstport 8472") && link.contains("nolearning"),
        "{link}"
    );
    let nft = c.nodes[0].exec("nft", &["list", "table", "inet", "weft"])?;
    let nft = String::from_utf8_lossy(&nft.stdout);
    ensure!(
        nft.contains("masquerade") && nft.contains("@cluster4"),
        "{nft}"
    );
    Ok(())
}

#[test]
fn restart_under_ping_changes_nothing_and_loses_nothing() -> Result<()> {
    if !privileged("restart_under_ping_changes_nothing_and_loses_nothing") {
        return Ok(());
    }
    let mut c = Cluster::new("agrs")?;
    c.converge(Backend::Vxlan)?;
    // While a ping runs, fresh agents (new sockets, fresh decisions, as
    // after `kill -9` and a restart) reconcile the configured nodes again
    // and again: they must adopt everything and change nothing.
    let ping = std::thread::scope(|s| -> Result<_> {
        let pinger = s.spawn(|| {
            c.nodes[0]
                .command("ping")
                .args([
                    "-4",
                    "-c",
                    "40",
                    "-i",
                    "0.02",
                    "-I",
                    "10.244.1.1",
                    "10.244.2.1",
                ])
                .output()
        });
        for round in 0..5 {
            for i in 0..2 {
                let cfg = Cluster::cfg(i, Backend::Vxlan);
                let me = c.view.nodes[i].clone();
                let view = c.view.clone();
                let r = c.nodes[i].run(move || -> weft_agent::Result<Report> {
                    let mut kernel = NetlinkKernel::new()?;
                    let local = observe_local(&mut kernel, &me)?;
                    reconcile(&mut kernel, &desired(&view, &cfg, &local))
                })??;
                ensure!(
                    r.changes() == 0,
                    "round {round}: restarted agent {i} changed {r:?}"
                );
            }
        }
        Ok(pinger.join().expect("ping thread"))
    })?;
    let out = ping.context("run ping")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains(" 0% packet loss"),
        "{text}"
    );
    Ok(())
}

#[test]
fn removed_node_loses_its_route_neighbour_and_fdb() -> Result<()> {
    if !privileged("removed_node_loses_its_route_neighbour_and_fdb") {
        return Ok(());
    }
    let mut c = Cluster::new("agrm")?;
    c.converge(Backend::Vxlan)?;
    let fdb = |c: &Cluster| -> Result<String> {
        let out = c.nodes[0].exec("bridge", &["fdb", "show", "dev", "weft.vxlan"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    ensure!(fdb(&c)?.contains("dst 192.168.77.2"));

    let mut alone = c.view.clone();
    alone.nodes.truncate(1);
    let r = c.reconcile(0, Some(&alone), Backend::Vxlan)?;
    ensure!((r.routes, r.neighbours, r.fdb) == (2, 2, 1), "{r:?}");
    let routes = c.nodes[0].ip(&["route", "show", "proto", "0x57"])?;
    let routes6 = c.nodes[0].ip(&["-6", "route", "show", "proto", "0x57"])?;
    ensure!(
        routes.trim().is_empty() && routes6.trim().is_empty(),
        "{routes}{routes6}"
    );
    let neigh = c.nodes[0].ip(&["neigh", "show", "dev", "weft.vxlan", "nud", "permanent"])?;
    ensure!(neigh.trim().is_empty(), "{neigh}");
    ensure!(!fdb(&c)?.contains("dst"), "fdb left: {}", fdb(&c)?);

    // And back: the peer returns, traffic flows again.
    c.reconcile(0, None, Backend::Vxlan)?;
    c.ping(0, "10.244.1.1", "10.244.2.1")?;
    Ok(())
}

#[test]
fn host_gw_between_two_nodes() -> Result<()> {
    if !privileged("host_gw_between_two_nodes") {
        return Ok(());
    }
    let mut c = Cluster::new("aghg")?;
    // Stand-ins for a pod on each node: an address of its pod CIDR on lo.
    for (i, ns) in c.nodes.iter().enumerate() {
        let n = i + 1;
        ns.ip(&["addr", "add", &format!("10.244.{n}.5/32"), "dev", "lo"])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("fd00:10:244:{n}::5/128"),
            "dev",
            "lo",
        ])?;
    }
    c.converge(Backend::HostGw)?;
    let routes = c.nodes[0].ip(&["route", "show", "proto", "0x57"])?;
    ensure!(
        routes.contains("10.244.2.0/24 via 192.168.77.2 dev eth0"),
        "{routes}"
    );
    ensure!(c.nodes[0].ip(&["link", "show", "weft.vxlan"]).is_err());
    c.ping(0, "10.244.1.5", "10.244.2.5")?;
    c.ping(0, "fd00:10:244:1::5", "fd00:10:244:2::5")?;
    for i in 0..2 {
        let again = c.reconcile(i, None, Backend::HostGw)?;
        ensure!(
            again.changes() == 0,
            "node {i}: second reconcile changed {again:?}"
        );
    }
    Ok(())
}
