use std::collections::BTreeSet;

use weft_policy::compile;
use weft_policy::nft::render_delta;

use super::*;

#[test]
fn the_same_size_gives_the_same_cluster() {
    let a = cluster(1_000).unwrap();
    let b = cluster(1_000).unwrap();
    assert_eq!(a.view.pods, b.view.pods);
    assert_eq!(a.view.policies, b.view.policies);
    assert_eq!(a.view.namespaces, b.view.namespaces);
    assert_eq!(a.node, b.node);
}

#[test]
fn sizes_follow_the_plan() {
    for pods in [1_000, 10_000] {
        let c = cluster(pods).unwrap();
        assert_eq!(c.view.pods.len(), pods);
        assert_eq!(c.view.policies.len(), pods, "as many policies as pods");
        assert_eq!(c.view.namespaces.len(), pods / 100);
        assert_eq!(c.node.pods.len(), PODS_PER_NODE, "one node's share");
        let addresses: BTreeSet<_> = c.view.pods.iter().flat_map(|p| p.ips.clone()).collect();
        assert_eq!(addresses.len(), pods, "every pod has an address of its own");
        let local = &c.node.pod_cidrs[0];
        assert!(c.node.pods.iter().all(|p| local.contains(&p.ips[0])));
    }
    assert_eq!(node_count(50_000), 500);
    assert_eq!(node_count(1), 1);
}

#[test]
fn every_shape_validates_and_is_used() {
    // pol-0 .. pol-4 are the five shapes; all of them parse (cluster()
    // would fail otherwise) and name their namespace.
    let c = cluster(1_000).unwrap();
    for (p, policy) in c.view.policies.iter().enumerate().take(10) {
        assert_eq!(policy.name, format!("pol-{p}"));
        assert_eq!(policy.namespace, format!("ns-{}", p % 10));
    }
    let with_ip_blocks = (0..1_000)
        .filter(|&p| policy_json(p, 10, None).to_string().contains("ipBlock"))
        .count();
    assert_eq!(with_ip_blocks, 400, "shapes 2 and 4 carry ipBlocks");
    let named = policy_json(0, 10, None).to_string();
    assert!(named.contains("\"http\""), "named ports are used: {named}");
}

#[test]
fn the_changed_policy_and_the_new_pod_change_the_node_table() {
    let mut c = cluster(1_000).unwrap();
    let before = compile(&c.view, &c.node);
    c.change_policy().unwrap();
    let changed = compile(&c.view, &c.node);
    let delta = render_delta(&before, &changed).expect("pol-0 selects a local pod");
    assert!(delta.contains("8443"), "{delta}");

    c.add_local_pod();
    let new = c.view.pods.last().unwrap().clone();
    assert_eq!(new.node_name.as_deref(), Some(LOCAL_NODE));
    assert_eq!(c.node.pods.len(), PODS_PER_NODE + 1);
    assert!(
        c.view.pods[..c.view.pods.len() - 1]
            .iter()
            .all(|p| p.ips != new.ips && p.name != new.name),
        "the new pod is new"
    );
    let added = compile(&c.view, &c.node);
    assert!(render_delta(&changed, &added).is_some());
}
