//! Kernel tier: an endpoint change committed as a netlink batch
//! ([`delta_batch`]) leaves exactly the table that loading the new ruleset
//! whole with `nft -f` gives, as `nft list` shows it. Each scenario runs in
//! two `weft` namespaces of its own.

mod support;

use serde_json::json;
use support::*;
use weft_model::EndpointSlice;
use weft_netlink::NftSocket;
use weft_proxy::{compile, delta_batch, render_full};
use weft_testkit::{NetNs, privileged};

/// `cluster()` with Service `web`'s second slice holding `ips` (ready, on
/// node-b unless in this node's pod CIDR).
fn with_web(ips: &[&str]) -> Vec<EndpointSlice> {
    let (_, mut slices) = cluster();
    let i = slices.iter().position(|s| s.name == "web-b").unwrap();
    let endpoints: Vec<_> = ips
        .iter()
        .map(|ip| {
            ready(
                ip,
                if ip.starts_with("10.244.1.") {
                    "node-a"
                } else {
                    "node-b"
                },
            )
        })
        .collect();
    slices[i] = slice(
        "web-b",
        "web",
        "IPv4",
        json!(endpoints),
        json!([{"name": "http", "port": 9090}]),
    );
    slices
}

/// The table as `nft list` shows it, with each set's elements sorted (the
/// kernel lists a hash set in its own order).
fn listing(ns: &NetNs) -> String {
    let text = nft(ns, &["list", "table", "inet", "weft-proxy"], "");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("elements = { ") {
        let body_start = start + "elements = { ".len();
        let end = body_start + rest[body_start..].find(" }").unwrap();
        let mut elements: Vec<String> = rest[body_start..end]
            .split(',')
            .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        elements.sort();
        out.push_str(&rest[..body_start]);
        out.push_str(&elements.join(", "));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn endpoint_changes_committed_over_netlink_equal_a_full_load() {
    if !privileged("endpoint_changes_committed_over_netlink_equal_a_full_load") {
        return;
    }
    let (services, _) = cluster();
    let scenarios: [(&str, &[&str], &[&str]); 4] = [
        ("added", &["10.244.2.7"], &["10.244.2.7", "10.244.2.8"]),
        (
            "added on this node (hairpin)",
            &["10.244.2.7", "10.244.2.8"],
            &["10.244.2.7", "10.244.2.8", "10.244.1.7"],
        ),
        (
            "removed",
            &["10.244.2.7", "10.244.2.8", "10.244.1.7"],
            &["10.244.2.7", "10.244.1.7"],
        ),
        (
            "replaced",
            &["10.244.2.7", "10.244.2.8"],
            &["10.244.2.7", "10.244.2.9"],
        ),
    ];
    for (what, before, after) in scenarios {
        let old = compile(&services, &with_web(before), &node());
        let new = compile(&services, &with_web(after), &node());
        let batch = delta_batch(&old, &new)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|| panic!("{what}: no change"));

        let delta = NetNs::new("pxb").unwrap();
        nft(&delta, &["-f", "-"], &render_full(&old));
        delta
            .run(|| NftSocket::new()?.commit(&batch))
            .unwrap()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let full = NetNs::new("pxf").unwrap();
        nft(&full, &["-f", "-"], &render_full(&new));
        assert_eq!(listing(&delta), listing(&full), "{what}");
    }
}
