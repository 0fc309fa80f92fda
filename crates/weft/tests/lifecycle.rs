//! Kernel tier: the plugin's full lifecycle in namespaces of its own, for
//! every CNI version it speaks, single- and dual-stack.

mod common;

use common::*;
use serde_json::Value;

const ALL_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fn lifecycle(version: &str) {
    let node = Node::new("lc");
    let pod = node.pod("p");
    let conf = node.conf(version, &["10.244.1.0/24"]);
    let result = node.add(&pod, &conf);
    assert_eq!(result["cniVersion"], version);

    // The result is shaped as this version says.
    let address = if version < "0.3.0" {
        assert!(result.get("interfaces").is_none(), "{result}");
        assert_eq!(result["ip4"]["gateway"], "169.254.1.1");
        result["ip4"]["ip"].as_str().unwrap().to_string()
    } else {
        let ifaces = result["interfaces"].as_array().unwrap();
        assert_eq!(ifaces.len(), 2);
        assert!(ifaces[0]["name"].as_str().unwrap().starts_with("weft"));
        assert!(
            ifaces[0].get("sandbox").is_none(),
            "host interface has no sandbox"
        );
        assert_eq!(ifaces[1]["name"], "eth0");
        assert_eq!(ifaces[1]["sandbox"], pod.ns.path().display().to_string());
        let ip = &result["ips"][0];
        assert_eq!(ip["interface"], 1);
        assert_eq!(ip["gateway"], "169.254.1.1");
        if version < "1.0.0" {
            assert_eq!(ip["version"], "4");
            assert!(ifaces[1].get("mtu").is_none(), "mtu is 1.1-only: {result}");
        } else {
            assert!(ip.get("version").is_none());
        }
        ip["address"].as_str().unwrap().to_string()
    };
    assert!(
        address.starts_with("10.244.1.") && address.ends_with("/32"),
        "{address}"
    );
    assert_eq!(addresses(&pod.ns, "eth0"), vec![address.clone()]);
    let pod_routes = pod.ns.ip(&["-4", "route", "show"]).unwrap();
    assert!(
        pod_routes.contains("default via 169.254.1.1 dev eth0"),
        "{pod_routes}"
    );
    let ip = address.trim_end_matches("/32");
    assert!(
        node.routes("-4").contains(&format!("{ip} dev weft")),
        "{}",
        node.routes("-4")
    );
    assert!(ping(&node.ns, ip), "node reaches the pod");

    if version >= "0.4.0" {
        let mut c = conf.clone();
        c["prevResult"] = result.clone();
        node.weft("CHECK", &pod, &c).ok();
    } else {
        let mut c = conf.clone();
        c["prevResult"] = result.clone();
        assert_eq!(node.weft("CHECK", &pod, &c).code(), 1, "CHECK needs 0.4.0");
    }

    node.del(&pod, &conf, (version >= "0.4.0").then_some(&result))
        .ok();
    assert!(
        node.weft_links().is_empty(),
        "host veth left: {:?}",
        node.weft_links()
    );
    assert!(!has_link(&pod.ns, "eth0"));
    assert!(
        node.reserved().is_empty(),
        "reservation left: {:?}",
        node.reserved()
    );
    assert!(!node.routes("-4").contains(ip));
    // DEL is idempotent.
    node.del(&pod, &conf, None).ok();
}

#[test]
fn lifecycle_every_version() {
    if !weft_testkit::privileged("lifecycle_every_version") {
        return;
    }
    for v in ALL_VERSIONS {
        lifecycle(v);
    }
}

#[test]
fn dual_stack_pods_reach_each_other() {
    if !weft_testkit::privileged("dual_stack_pods_reach_each_other") {
        return;
    }
    let node = Node::new("ds");
    let conf = node.conf("1.1.0", &["10.244.2.0/24", "fd00:10:244:2::/64"]);
    let a = node.pod("a");
    let b = node.pod("b");
    let ra = node.add(&a, &conf);
    let rb = node.add(&b, &conf);
    let addr = |r: &Value, i: usize| {
        r["ips"][i]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(ra["ips"].as_array().unwrap().len(), 2);
    assert_eq!(ra["ips"][1]["gateway"], "fe80::1");
    assert!(ra["ips"][1]["address"].as_str().unwrap().ends_with("/128"));
    let routes: Vec<&str> = ra["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dst"].as_str().unwrap())
        .collect();
    assert_eq!(routes, vec!["0.0.0.0/0", "::/0"]);
    assert!(ping(&a.ns, &addr(&rb, 0)), "a -> b over IPv4");
    assert!(ping(&a.ns, &addr(&rb, 1)), "a -> b over IPv6");
    assert!(ping(&b.ns, &addr(&ra, 1)), "b -> a over IPv6");
    assert!(ping(&node.ns, &addr(&ra, 1)), "node -> a over IPv6");
    // The host ends forward IPv6 without an address of their own (no
    // fe80::, no DAD, no MLD); the pod ends keep their link-local.
    for link in node.weft_links() {
        let v6 = node
            .ns
            .ip(&["-6", "-o", "addr", "show", "dev", &link])
            .unwrap();
        assert!(v6.trim().is_empty(), "{link} has IPv6 addresses: {v6}");
    }
    let pod_v6 =
        a.ns.ip(&["-6", "-o", "addr", "show", "dev", "eth0"])
            .unwrap();
    assert!(pod_v6.contains("fe80::"), "pod eth0: {pod_v6}");
    let mut c = conf.clone();
    c["prevResult"] = ra.clone();
    node.weft("CHECK", &a, &c).ok();
    node.del(&a, &conf, Some(&ra)).ok();
    node.del(&b, &conf, Some(&rb)).ok();
    assert!(node.weft_links().is_empty());
    assert!(node.reserved().is_empty());
}

#[test]
fn repeated_add_returns_the_same_address() {
    if !weft_testkit::privileged("repeated_add_returns_the_same_address") {
        return;
    }
    let node = Node::new("rep");
    let conf = node.conf("1.0.0", &["10.244.3.0/24"]);
    let pod = node.pod("p");
    let first = node.add(&pod, &conf);
    let second = node.add(&pod, &conf);
    assert_eq!(first["ips"], second["ips"]);
    assert_eq!(node.weft_links().len(), 1, "one attachment, one host veth");
    assert_eq!(node.reserved().len(), 1);
    let mut c = conf.clone();
    c["prevResult"] = second.clone();
    node.weft("CHECK", &pod, &c).ok();
    node.del(&pod, &conf, Some(&second)).ok();
}

#[test]
fn addresses_skip_network_node_and_broadcast() {
    if !weft_testkit::privileged("addresses_skip_network_node_and_broadcast") {
        return;
    }
    let node = Node::new("skip");
    // A /29 has 8 addresses: .0 network, .1 the node's, .7 broadcast → 5 usable.
    let conf = node.conf("1.1.0", &["10.244.9.0/29"]);
    let mut got = Vec::new();
    let pods: Vec<Pod> = (0..5).map(|i| node.pod(&format!("s{i}"))).collect();
    for p in &pods {
        let r = node.add(p, &conf);
        got.push(r["ips"][0]["address"].as_str().unwrap().to_string());
    }
    got.sort();
    assert_eq!(
        got,
        [
            "10.244.9.2/32",
            "10.244.9.3/32",
            "10.244.9.4/32",
            "10.244.9.5/32",
            "10.244.9.6/32"
        ]
    );
    for p in &pods {
        node.del(p, &conf, None).ok();
    }
}
