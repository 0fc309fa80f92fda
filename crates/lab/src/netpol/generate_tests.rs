use weft_model::{NetworkPolicy, Peer, PortMatch};

use super::*;

fn universe() -> Universe {
    Universe::netpol(&[
        "10.244.1.0/24".parse().unwrap(),
        "10.244.2.0/24".parse().unwrap(),
        "fd00:10:244:1::/64".parse().unwrap(),
    ])
}

#[test]
fn rng_is_reproducible_and_spread() {
    let a: Vec<u64> = {
        let mut r = Rng::new(42);
        (0..8).map(|_| r.next_u64()).collect()
    };
    let b: Vec<u64> = {
        let mut r = Rng::new(42);
        (0..8).map(|_| r.next_u64()).collect()
    };
    assert_eq!(a, b);
    let mut zero = Rng::new(0);
    assert_ne!(zero.next_u64(), zero.next_u64());
    let mut r = Rng::new(1);
    let mut seen = [0usize; 4];
    for _ in 0..4000 {
        seen[r.below(4)] += 1;
    }
    assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    for _ in 0..1000 {
        assert!((3..=5).contains(&r.range(3, 5)));
    }
}

#[test]
fn generation_is_reproducible_from_a_seed() {
    let u = universe();
    assert_eq!(policies(7, &u, 20), policies(7, &u, 20));
    assert_ne!(policies(7, &u, 20), policies(8, &u, 20));
}

#[test]
fn generated_policies_always_pass_model_validation() {
    let u = universe();
    for seed in 0..50 {
        for doc in policies(seed, &u, 40) {
            if let Err(e) = NetworkPolicy::from_value(&doc) {
                panic!("seed {seed}: {e}\n{doc:#}");
            }
        }
    }
}

/// Over a few hundred policies, every feature the generator promises
/// shows up, so that a differential run covers the semantics.
#[test]
fn generated_policies_cover_the_api() {
    let u = universe();
    let docs = policies(3, &u, 400);
    let converted: Vec<NetworkPolicy> = docs
        .iter()
        .map(|d| NetworkPolicy::from_value(d).unwrap())
        .collect();
    let text = serde_json::to_string(&docs).unwrap();
    for needle in [
        "\"matchLabels\"",
        "\"In\"",
        "\"NotIn\"",
        "\"Exists\"",
        "\"DoesNotExist\"",
        "kubernetes.io/metadata.name",
        "\"except\"",
        "\"endPort\"",
        "\"SCTP\"",
        "\"UDP\"",
        "serve-80-tcp",
        "\"policyTypes\":[\"Egress\"]",
        "\"policyTypes\":[\"Ingress\",\"Egress\"]",
        "\"ingress\":[]",
    ] {
        assert!(text.contains(needle), "no {needle} in 400 policies");
    }
    let rules = || {
        converted
            .iter()
            .flat_map(|p| p.ingress.iter().chain(&p.egress))
    };
    let peers = || rules().flat_map(|r| &r.peers);
    assert!(peers().any(|p| matches!(p, Peer::IpBlock(b) if b.cidr.addr().is_ipv6())));
    assert!(peers().any(|p| matches!(
        p,
        Peer::Selector {
            namespace_selector: Some(_),
            pod_selector: Some(_)
        }
    )));
    assert!(rules().any(|r| r.peers.is_empty()) && rules().any(|r| r.ports.is_empty()));
    let ports = || rules().flat_map(|r| &r.ports);
    assert!(ports().any(|p| p.port.is_none()));
    assert!(ports().any(|p| matches!(&p.port, Some(PortMatch::Named(n)) if n == ABSENT_PORT_NAME)));
    assert!(converted.iter().any(|p| p.pod_selector.is_empty()));
    let namespaces: std::collections::BTreeSet<_> =
        converted.iter().map(|p| p.namespace.as_str()).collect();
    assert_eq!(namespaces.len(), 3);
}
