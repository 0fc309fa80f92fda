//! Kernel tier: weft as the first plugin of a conflist followed by the
//! reference portmap, bandwidth and tuning plugins (Debian's
//! containernetworking-plugins), driven the way libcni drives a chain: ADD in
//! order with each result passed on as prevResult, CHECK in order and DEL in
//! reverse order with the final result.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};

fn plugin_bin(kind: &str) -> PathBuf {
    if kind == "weft" {
        weft_bin()
    } else {
        PathBuf::from(REFERENCE_DIR).join(kind)
    }
}

/// One step of a chain as libcni builds it: name and version injected,
/// runtimeConfig limited to the capabilities the plugin declares.
fn step(plugin: &Value, list: &Value, prev: Option<&Value>, caps: &Value) -> Value {
    let mut c = plugin.clone();
    c["name"] = list["name"].clone();
    c["cniVersion"] = list["cniVersion"].clone();
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    let mut rc = serde_json::Map::new();
    for (cap, on) in plugin["capabilities"].as_object().into_iter().flatten() {
        if on == true {
            if let Some(v) = caps.get(cap) {
                rc.insert(cap.clone(), v.clone());
            }
        }
    }
    if !rc.is_empty() {
        c["runtimeConfig"] = Value::Object(rc);
    }
    c
}

fn chain(
    node: &Node,
    pod: &Pod,
    command: &str,
    list: &Value,
    caps: &Value,
    result: Option<&Value>,
) -> Option<Value> {
    let plugins = list["plugins"].as_array().unwrap();
    let order: Vec<&Value> = if command == "DEL" {
        plugins.iter().rev().collect()
    } else {
        plugins.iter().collect()
    };
    let mut prev = result.cloned();
    for p in order {
        let kind = p["type"].as_str().unwrap();
        let conf = step(p, list, prev.as_ref(), caps);
        let r = node.call(
            &plugin_bin(kind),
            command,
            &pod.cid,
            Some(pod.ns.path()),
            "eth0",
            &conf,
        );
        assert_eq!(
            r.exit, 0,
            "{command} {kind} failed: {} {}",
            r.stdout, r.stderr
        );
        if command == "ADD" {
            prev = Some(r.json);
        }
    }
    prev
}

#[test]
fn reference_plugins_chain_after_weft() {
    if !weft_testkit::privileged("reference_plugins_chain_after_weft") {
        return;
    }
    for p in ["portmap", "bandwidth", "tuning"] {
        assert!(
            plugin_bin(p).exists(),
            "{p} missing: install containernetworking-plugins"
        );
    }
    let node = Node::new("chain");
    let pod = node.pod("p");
    let list = json!({
        "cniVersion": "1.0.0",
        "name": node.network,
        "plugins": [
            {"type": "weft", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"], "dataDir": node.data.path()},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}},
            {"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}}
        ]
    });
    let caps = json!({
        "portMappings": [{"hostPort": 30080, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 1_000_000, "egressRate": 10_000_000, "egressBurst": 1_000_000}
    });
    let result = chain(&node, &pod, "ADD", &list, &caps, None).unwrap();
    let ip = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    let host_if = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();

    // portmap found the pod address in weft's result.
    let nat = node.ns.exec("iptables-save", &["-t", "nat"]).unwrap();
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(
        nat.contains(&format!("{ip}:80")),
        "no DNAT to the pod: {nat}"
    );
    // bandwidth found the host veth (listed without a sandbox) and shaped it.
    let tc = node
        .ns
        .exec("tc", &["qdisc", "show", "dev", &host_if])
        .unwrap();
    let tc = String::from_utf8_lossy(&tc.stdout);
    assert!(tc.contains("tbf"), "no tbf on {host_if}: {tc}");
    // tuning set the sysctl inside the pod.
    let v = pod
        .ns
        .exec("cat", &["/proc/sys/net/core/somaxconn"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "512");
    assert!(ping(&node.ns, &ip));

    let ip6 = result["ips"][1]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/128")
        .to_string();
    let nat6 = node.ns.exec("ip6tables-save", &["-t", "nat"]).unwrap();
    assert!(
        String::from_utf8_lossy(&nat6.stdout).contains(&ip6),
        "no v6 DNAT to the pod"
    );
    // CHECK runs over the chain except portmap: Debian's portmap 1.1.1 checks
    // its IPv4 rules against the IPv6 table (and, single-stack, looks for an
    // IPv6 chain it never created), so its CHECK fails whatever precedes it.
    let mut checked = list.clone();
    checked["plugins"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["type"] != "portmap");
    chain(&node, &pod, "CHECK", &checked, &caps, Some(&result));
    chain(&node, &pod, "DEL", &list, &caps, Some(&result));
    let nat = node.ns.exec("iptables-save", &["-t", "nat"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&nat.stdout).contains(&ip),
        "portmap rules left"
    );
    assert!(node.weft_links().is_empty());
    assert!(node.reserved().is_empty());
}
