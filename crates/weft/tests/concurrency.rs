//! Kernel tier: many ADDs at once (as a runtime starting a node full of pods)
//! get distinct addresses, and the same number of DELs leave nothing.

mod common;

use std::collections::HashSet;

use common::*;

#[test]
fn sixty_parallel_adds_get_distinct_addresses() {
    if !weft_testkit::privileged("sixty_parallel_adds_get_distinct_addresses") {
        return;
    }
    const N: usize = 60;
    let node = Node::new("par");
    let conf = node.conf("1.1.0", &["10.244.0.0/24", "fd00:10:244::/64"]);
    let pods: Vec<Pod> = (0..N).map(|i| node.pod(&format!("c{i}"))).collect();
    let results: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|p| s.spawn(|| node.add(p, &conf)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let mut seen = HashSet::new();
    for r in &results {
        for ip in r["ips"].as_array().unwrap() {
            assert!(
                seen.insert(ip["address"].as_str().unwrap().to_string()),
                "duplicate {ip}"
            );
        }
    }
    assert_eq!(seen.len(), 2 * N);
    assert_eq!(node.reserved().len(), 2 * N);
    assert_eq!(node.weft_links().len(), N);
    std::thread::scope(|s| {
        for (p, r) in pods.iter().zip(&results) {
            let node = &node;
            let conf = &conf;
            s.spawn(move || node.del(p, conf, Some(r)).ok());
        }
    });
    assert!(node.reserved().is_empty());
    assert!(node.weft_links().is_empty());
}
