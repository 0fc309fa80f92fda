//! Deltas: a change of one endpoint renders as set/map elements plus at
//! most one changed chain (and, for a `ClientIP` Service, the endpoint's
//! own chain and affinity set), never a rewrite of the table.

mod support;

use serde_json::json;
use support::*;
use weft_model::EndpointSlice;
use weft_proxy::{compile, render_delta};

/// The delta's commands, by verb and object (`flush chain`, `add element`, ...).
fn commands(delta: &str) -> Vec<(String, String)> {
    delta
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // `<verb> <object> inet weft-proxy <name> ...`
            assert_eq!(words[2..4], ["inet", "weft-proxy"], "{l}");
            (format!("{} {}", words[0], words[1]), words[4].to_owned())
        })
        .collect()
}

fn count(cmds: &[(String, String)], kind: &str) -> usize {
    cmds.iter().filter(|(k, _)| k == kind).count()
}

fn web_slice(extra: &[&str]) -> EndpointSlice {
    let mut endpoints = vec![ready("10.244.2.7", "node-b")];
    endpoints.extend(extra.iter().map(|ip| ready(ip, "node-b")));
    slice(
        "web-b",
        "web",
        "IPv4",
        json!(endpoints),
        json!([{"name": "http", "port": 9090}]),
    )
}

fn with_web_slice(slice: EndpointSlice) -> Vec<EndpointSlice> {
    let (_, mut slices) = cluster();
    let i = slices.iter().position(|s| s.name == "web-b").unwrap();
    slices[i] = slice;
    slices
}

#[test]
fn no_change_no_delta() {
    let (services, slices) = cluster();
    let a = compile(&services, &slices, &node());
    assert_eq!(render_delta(&a, &a.clone()), None);
}

#[test]
fn endpoint_added_changes_one_chain_and_elements() {
    let (services, _) = cluster();
    let old = compile(&services, &with_web_slice(web_slice(&[])), &node());
    // One endpoint on another node, one on this node (in its pod CIDR: it
    // may hairpin).
    let new = compile(
        &services,
        &with_web_slice(web_slice(&["10.244.3.7", "10.244.1.7"])),
        &node(),
    );
    let delta = render_delta(&old, &new).unwrap();
    let cmds = commands(&delta);
    assert_eq!(count(&cmds, "flush chain"), 1, "{delta}");
    assert!(
        cmds.iter()
            .any(|(k, n)| k == "flush chain" && n.starts_with("svc4-")),
        "{delta}"
    );
    assert_only_elements_and_rules(&cmds, &delta);
    assert!(
        delta.contains("add element inet weft-proxy hairpin4 { 10.244.1.7 . 10.244.1.7 }"),
        "{delta}"
    );
    assert!(!delta.contains("10.244.3.7 . 10.244.3.7"), "{delta}");
    // The endpoints are map elements; the rule only learns their number.
    assert!(
        cmds.iter()
            .any(|(k, n)| k == "add element" && n.starts_with("backends4-tcp-")),
        "{delta}"
    );
    assert!(delta.contains(" : 10.244.3.7 . 9090"), "{delta}");
    assert!(delta.contains(" : 10.244.1.7 . 9090"), "{delta}");
    assert!(
        delta.contains("meta l4proto tcp dnat ip to numgen random mod 4 offset "),
        "{delta}"
    );
}

/// Nothing but element changes and the rules of flushed chains.
fn assert_only_elements_and_rules(cmds: &[(String, String)], delta: &str) {
    assert!(
        cmds.iter().all(
            |(k, _)| ["add element", "delete element", "flush chain", "add rule"]
                .contains(&k.as_str())
        ),
        "{delta}"
    );
}

#[test]
fn endpoint_removed_or_unready_changes_one_chain_and_elements() {
    let (services, _) = cluster();
    let old = compile(
        &services,
        &with_web_slice(web_slice(&["10.244.1.7"])),
        &node(),
    );
    let mut unready = web_slice(&["10.244.1.7"]);
    unready.endpoints[1].conditions.ready = false;
    for slices in [with_web_slice(web_slice(&[])), with_web_slice(unready)] {
        let new = compile(&services, &slices, &node());
        let delta = render_delta(&old, &new).unwrap();
        let cmds = commands(&delta);
        assert_eq!(count(&cmds, "flush chain"), 1, "{delta}");
        assert_only_elements_and_rules(&cmds, &delta);
        assert!(
            delta.contains("delete element inet weft-proxy hairpin4"),
            "{delta}"
        );
    }
}

#[test]
fn affinity_endpoint_added_adds_its_set() {
    let (services, mut slices) = cluster();
    let old = compile(&services, &slices, &node());
    let i = slices.iter().position(|s| s.name == "sticky").unwrap();
    slices[i] = slice(
        "sticky",
        "sticky",
        "IPv4",
        json!([
            ready("10.244.1.9", "node-a"),
            ready("10.244.2.9", "node-b"),
            ready("10.244.3.9", "node-c")
        ]),
        json!([{"port": 5353, "protocol": "UDP"}]),
    );
    let new = compile(&services, &slices, &node());
    let delta = render_delta(&old, &new).unwrap();
    let cmds = commands(&delta);
    assert_eq!(count(&cmds, "add set"), 1, "{delta}");
    assert_eq!(count(&cmds, "add chain"), 1, "{delta}");
    assert_eq!(count(&cmds, "flush chain"), 1, "{delta}");
    assert!(delta.contains("update @aff4-"), "{delta}");
}

#[test]
fn last_endpoint_gone_moves_elements_to_reject() {
    let (services, _) = cluster();
    let mut slices = with_web_slice(web_slice(&[]));
    let old = compile(&services, &slices, &node());
    slices.retain(|s| s.service.as_deref() != Some("web"));
    let new = compile(&services, &slices, &node());
    let delta = render_delta(&old, &new).unwrap();
    assert!(
        delta.contains("delete element inet weft-proxy service_ips4 { 10.96.0.10 . tcp . 80 }"),
        "{delta}"
    );
    assert!(
        delta.contains(
            "add element inet weft-proxy no_endpoints4 { 10.96.0.10 . tcp . 80 : goto reject_no_endpoints }"
        ),
        "{delta}"
    );
    let cmds = commands(&delta);
    assert_eq!(count(&cmds, "flush chain"), 0, "{delta}");
    // The pick chain goes.
    assert_eq!(count(&cmds, "delete chain"), 1, "{delta}");
}

#[test]
fn node_change_of_base_chains_is_never_needed() {
    // Base chains are constants: a different node changes only sets.
    let (services, slices) = cluster();
    let mut other = node();
    other.node_ips = vec!["192.168.50.3".parse().unwrap()];
    let delta = render_delta(
        &compile(&services, &slices, &node()),
        &compile(&services, &slices, &other),
    )
    .unwrap();
    assert!(!delta.starts_with("table "), "{delta}");
    assert!(delta.contains("node_ips4 { 192.168.50.3 }"), "{delta}");
}
