//! Kernel tier: DEL without a netns, DEL twice, and GC of attachments the
//! runtime no longer lists.

mod common;

use common::*;
use serde_json::json;

#[test]
fn del_after_the_netns_is_gone_releases_the_address() {
    if !weft_testkit::privileged("del_after_the_netns_is_gone_releases_the_address") {
        return;
    }
    let node = Node::new("gone");
    let conf = node.conf("1.1.0", &["10.244.1.0/24"]);
    let pod = node.pod("p");
    let path = pod.ns.path().to_path_buf();
    let result = node.add(&pod, &conf);
    let cid = pod.cid.clone();
    drop(pod.ns); // the runtime removed the sandbox first
    // Destroying the netns destroys the veth pair; DEL still releases.
    let r = node.call(&weft_bin(), "DEL", &cid, Some(&path), "eth0", &{
        let mut c = conf.clone();
        c["prevResult"] = result;
        c
    });
    r.ok();
    // And with an empty CNI_NETNS, twice.
    node.call(&weft_bin(), "DEL", &cid, None, "eth0", &conf)
        .ok();
    node.call(&weft_bin(), "DEL", &cid, None, "eth0", &conf)
        .ok();
    assert!(node.reserved().is_empty());
    assert!(node.weft_links().is_empty());
}

#[test]
fn del_of_an_unknown_container_succeeds() {
    if !weft_testkit::privileged("del_of_an_unknown_container_succeeds") {
        return;
    }
    let node = Node::new("unk");
    let conf = node.conf("1.1.0", &["10.244.1.0/24"]);
    node.call(&weft_bin(), "DEL", "never-added", None, "eth0", &conf)
        .ok();
    // DEL needs no pod CIDRs or node state.
    let bare = json!({"cniVersion":"1.1.0","name":node.network,"type":"weft","dataDir":node.data.path(),
                      "nodeStateFile": node.data.path().join("absent.json")});
    node.call(&weft_bin(), "DEL", "never-added", None, "eth0", &bare)
        .ok();
}

#[test]
fn gc_releases_what_is_not_valid() {
    if !weft_testkit::privileged("gc_releases_what_is_not_valid") {
        return;
    }
    let node = Node::new("gc");
    let conf = node.conf("1.1.0", &["10.244.1.0/24", "fd00:10:244:1::/64"]);
    let keep = node.pod("k");
    let lose = node.pod("l");
    let rk = node.add(&keep, &conf);
    node.add(&lose, &conf);
    assert_eq!(node.reserved().len(), 4);
    assert_eq!(node.weft_links().len(), 2);

    // Absent key: nothing happens.
    node.call(&weft_bin(), "GC", "", None, "", &conf).ok();
    assert_eq!(node.reserved().len(), 4);

    // GC needs 1.1.0.
    let mut old = node.conf("1.0.0", &["10.244.1.0/24"]);
    old["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(node.call(&weft_bin(), "GC", "", None, "", &old).code(), 1);

    // Only `keep` is valid (given under the tag's key name, which libcni also sends).
    let mut gc = conf.clone();
    gc["cni.dev/attachments"] = json!([{"containerID": keep.cid, "ifname": "eth0"}]);
    node.call(&weft_bin(), "GC", "", None, "", &gc).ok();
    let kept: Vec<String> = rk["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut reserved = node.reserved();
    reserved.sort();
    let mut want = kept.clone();
    want.sort();
    assert_eq!(reserved, want);
    assert_eq!(node.weft_links().len(), 1, "the stale host veth is gone");
    assert!(!has_link(&lose.ns, "eth0"));
    assert!(has_link(&keep.ns, "eth0"));
    let mut c = conf.clone();
    c["prevResult"] = rk.clone();
    node.weft("CHECK", &keep, &c).ok();

    // An empty list releases everything.
    let mut all = conf.clone();
    all["cni.dev/valid-attachments"] = json!([]);
    node.call(&weft_bin(), "GC", "", None, "", &all).ok();
    assert!(node.reserved().is_empty());
    assert!(node.weft_links().is_empty());
}

#[test]
fn gc_leaves_other_networks_alone() {
    if !weft_testkit::privileged("gc_leaves_other_networks_alone") {
        return;
    }
    let node = Node::new("gco");
    let conf = node.conf("1.1.0", &["10.244.1.0/24"]);
    let pod = node.pod("p");
    let r = node.add(&pod, &conf);
    let mut other = node.conf("1.1.0", &["10.244.2.0/24"]);
    other["name"] = json!("othernet");
    other["cni.dev/valid-attachments"] = json!([]);
    node.call(&weft_bin(), "GC", "", None, "", &other).ok();
    assert_eq!(node.weft_links().len(), 1);
    assert_eq!(node.reserved().len(), 1);
    node.del(&pod, &conf, Some(&r)).ok();
}
