//! Kernel tier: every failure gets the CNI error JSON with the right code and
//! leaves nothing behind — no veth, no reservation, no route.

mod common;

use common::*;
use serde_json::json;

fn assert_clean(node: &Node) {
    assert!(
        node.weft_links().is_empty(),
        "veth left: {:?}",
        node.weft_links()
    );
    assert!(
        node.reserved().is_empty(),
        "reservation left: {:?}",
        node.reserved()
    );
    assert!(
        !node.routes("-4").contains("dev weft"),
        "route left: {}",
        node.routes("-4")
    );
}

#[test]
fn bad_input_gets_the_right_code() {
    if !weft_testkit::privileged("bad_input_gets_the_right_code") {
        return;
    }
    let node = Node::new("bad");
    let pod = node.pod("p");
    let good = node.conf("1.1.0", &["10.244.1.0/24"]);
    let cases = [
        (json!("not an object"), 6),
        (
            json!({"cniVersion": "9.0.0", "name": "n", "type": "weft"}),
            1,
        ),
        (
            json!({"cniVersion": "1.1.0", "name": "n", "type": "weft", "podCIDRs": ["10.244.1.0/33"]}),
            7,
        ),
        (
            json!({"cniVersion": "1.1.0", "name": "n", "type": "weft", "podCIDRs": ["banana"]}),
            7,
        ),
        (
            json!({"cniVersion": "1.1.0", "type": "weft", "podCIDRs": ["10.244.1.0/24"]}),
            7,
        ),
        (
            json!({"cniVersion": "1.1.0", "name": "n", "type": "weft", "podCIDRs": ["10.244.1.0/24"], "mtu": 10}),
            7,
        ),
    ];
    for (conf, code) in cases {
        let r = node.weft("ADD", &pod, &conf);
        assert_eq!(r.code(), code, "{conf}: {}", r.stdout);
        assert!(r.json["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Undecodable stdin (not even JSON).
    let mut cmd = node.ns.command(weft_bin());
    cmd.env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "c1")
        .env("CNI_NETNS", pod.ns.path())
        .env("CNI_IFNAME", "eth0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"cniVersion\": ")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).expect("error JSON on stdout");
    assert_eq!(err["code"], 6);

    // Environment problems: code 4, naming the variable.
    let missing = std::path::Path::new("/run/netns/weft-no-such");
    let cases: [(&str, Option<&std::path::Path>, &str, &str); 5] = [
        ("ADD", None, "eth0", "CNI_NETNS"),
        ("ADD", Some(pod.ns.path()), "bad:name", "CNI_IFNAME"),
        (
            "ADD",
            Some(pod.ns.path()),
            "a-much-too-long-ifname",
            "CNI_IFNAME",
        ),
        ("FROB", Some(pod.ns.path()), "eth0", "CNI_COMMAND"),
        ("ADD", Some(missing), "eth0", "CNI_NETNS"),
    ];
    for (command, netns, ifname, var) in cases {
        let r = node.call(&weft_bin(), command, &pod.cid, netns, ifname, &good);
        assert_eq!(r.code(), 4, "{command} {ifname}: {}", r.stdout);
        assert!(
            r.json["msg"].as_str().unwrap().contains(var),
            "{command} {ifname}: the error names {var}: {}",
            r.stdout
        );
    }
    assert_clean(&node);
}

#[test]
fn kernel_failure_half_way_leaves_nothing() {
    if !weft_testkit::privileged("kernel_failure_half_way_leaves_nothing") {
        return;
    }
    let node = Node::new("half");
    let conf = node.conf("1.1.0", &["10.244.1.0/24", "fd00:10:244:1::/64"]);
    // The pod already has an eth0 that is not ours: ADD must fail after the
    // address was reserved, and undo it.
    let pod = node.pod("p");
    pod.ns
        .ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
        ])
        .unwrap();
    let r = node.weft("ADD", &pod, &conf);
    assert_eq!(r.code(), 100, "{}", r.stdout);
    assert!(
        r.json["msg"].as_str().unwrap().contains("already exists"),
        "{}",
        r.stdout
    );
    assert_clean(&node);
    assert!(
        has_link(&pod.ns, "eth0"),
        "someone else's interface is left alone"
    );

    // CNI_NETNS is a file, but not a network namespace.
    let not_netns = node.data.path().join("not-a-netns");
    std::fs::write(&not_netns, b"").unwrap();
    let r = node.call(&weft_bin(), "ADD", "c2", Some(&not_netns), "eth0", &conf);
    assert_ne!(r.exit, 0);
    assert!(r.json["code"].as_u64().is_some(), "{}", r.stdout);
    assert_clean(&node);

    // CNI_NETNS is the plugin's own namespace.
    let r = node.call(
        &weft_bin(),
        "ADD",
        "c3",
        Some(node.ns.path()),
        "eth0",
        &conf,
    );
    assert_eq!(r.code(), 8, "{}", r.stdout);
    assert_clean(&node);
}

#[test]
fn exhaustion_fails_cleanly_and_status_reports_it() {
    if !weft_testkit::privileged("exhaustion_fails_cleanly_and_status_reports_it") {
        return;
    }
    let node = Node::new("exh");
    // A /30: .0 network, .1 node, .3 broadcast: exactly one pod address.
    let conf = node.conf("1.1.0", &["10.244.7.0/30"]);
    let empty = node.pod("e");
    node.call(&weft_bin(), "STATUS", "", None, "", &conf).ok();
    let first = node.pod("a");
    let r1 = node.add(&first, &conf);
    assert_eq!(r1["ips"][0]["address"], "10.244.7.2/32");
    let second = node.pod("b");
    let r = node.weft("ADD", &second, &conf);
    assert_eq!(r.code(), 102, "{}", r.stdout);
    assert_eq!(node.weft_links().len(), 1, "no veth for the failed ADD");
    assert_eq!(node.reserved(), vec!["10.244.7.2"]);
    let s = node.call(&weft_bin(), "STATUS", "", None, "", &conf);
    assert_eq!(s.code(), 50, "{}", s.stdout);
    // STATUS needs 1.1.0.
    let s = node.call(
        &weft_bin(),
        "STATUS",
        "",
        None,
        "",
        &node.conf("1.0.0", &["10.244.7.0/30"]),
    );
    assert_eq!(s.code(), 1);
    node.del(&first, &conf, Some(&r1)).ok();
    node.call(&weft_bin(), "STATUS", "", None, "", &conf).ok();
    drop(empty);
}

#[test]
fn node_state_file_supplies_cidrs_and_mtu() {
    if !weft_testkit::privileged("node_state_file_supplies_cidrs_and_mtu") {
        return;
    }
    let node = Node::new("ns");
    let state = node.data.path().join("node.json");
    let conf = json!({
        "cniVersion": "1.1.0", "name": node.network, "type": "weft",
        "dataDir": node.data.path(), "nodeStateFile": state,
    });
    let pod = node.pod("p");
    // No node state yet: ADD says "try again later", STATUS says unavailable.
    assert_eq!(node.weft("ADD", &pod, &conf).code(), 11);
    assert_eq!(
        node.call(&weft_bin(), "STATUS", "", None, "", &conf).code(),
        50
    );
    assert!(node.weft_links().is_empty());

    std::fs::write(
        &state,
        r#"{"node":"n1","podCIDRs":["10.244.5.0/24"],"mtu":1450}"#,
    )
    .unwrap();
    node.call(&weft_bin(), "STATUS", "", None, "", &conf).ok();
    let r = node.add(&pod, &conf);
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.244.5.")
    );
    assert_eq!(r["interfaces"][1]["mtu"], 1450);
    let mtu = pod.ns.ip(&["-j", "link", "show", "eth0"]).unwrap();
    assert!(mtu.contains("\"mtu\":1450"), "{mtu}");
    // The config's own mtu wins over the node state.
    let pod2 = node.pod("q");
    let mut c2 = conf.clone();
    c2["mtu"] = json!(1400);
    let r2 = node.add(&pod2, &c2);
    assert_eq!(r2["interfaces"][1]["mtu"], 1400);
    node.del(&pod, &conf, Some(&r)).ok();
    node.del(&pod2, &conf, Some(&r2)).ok();
}

#[test]
fn check_detects_damage() {
    if !weft_testkit::privileged("check_detects_damage") {
        return;
    }
    let node = Node::new("chk");
    let conf = node.conf("1.1.0", &["10.244.1.0/24", "fd00:10:244:1::/64"]);
    type Damage = fn(&Node, &Pod, &str);
    let damages: [(&str, Damage); 6] = [
        ("pod default route", |_, p, _| {
            p.ns.ip(&["route", "del", "default"]).unwrap();
        }),
        ("pod v6 default route", |_, p, _| {
            p.ns.ip(&["-6", "route", "del", "default"]).unwrap();
        }),
        ("pod address", |_, p, ip| {
            p.ns.ip(&["addr", "del", &format!("{ip}/32"), "dev", "eth0"])
                .unwrap();
        }),
        ("host route", |n, _, ip| {
            n.ns.ip(&["route", "del", &format!("{ip}/32")]).unwrap();
        }),
        ("pod link down", |_, p, _| {
            p.ns.ip(&["link", "set", "eth0", "down"]).unwrap();
        }),
        ("host veth", |n, _, _| {
            let l = n.weft_links();
            n.ns.ip(&["link", "del", &l[0]]).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let pod = node.pod("p");
        let r = node.add(&pod, &conf);
        let mut c = conf.clone();
        c["prevResult"] = r.clone();
        node.weft("CHECK", &pod, &c).ok();
        let ip = r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .trim_end_matches("/32")
            .to_string();
        damage(&node, &pod, &ip);
        let bad = node.weft("CHECK", &pod, &c);
        assert_eq!(
            bad.code(),
            101,
            "CHECK missed damage to {what}: {}",
            bad.stdout
        );
        node.del(&pod, &conf, Some(&r)).ok();
    }
    // A reservation released behind our back.
    let pod = node.pod("p");
    let r = node.add(&pod, &conf);
    let mut c = conf.clone();
    c["prevResult"] = r.clone();
    std::fs::remove_file(
        node.data
            .path()
            .join(&node.network)
            .join("reservations.json"),
    )
    .unwrap();
    assert_eq!(node.weft("CHECK", &pod, &c).code(), 101);
    node.del(&pod, &conf, Some(&r)).ok();
    // CHECK without prevResult is an invalid request.
    let pod = node.pod("p");
    node.add(&pod, &conf);
    assert_eq!(node.weft("CHECK", &pod, &conf).code(), 7);
    node.del(&pod, &conf, None).ok();
    assert_clean(&node);
}
