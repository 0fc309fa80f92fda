//! The incremental compiler against the one-shot one: over random
//! sequences of Service and slice changes (seeded, so a failure replays),
//! the table a long-lived [`Compiler`] holds after every pass equals
//! [`compile`] of that pass's inputs, its change equals [`diff`] of the
//! previous table and the new one, and its hash equals a fresh compiler's.

mod support;

use serde_json::{Value, json};
use support::*;
use weft_model::{EndpointSlice, Service};
use weft_proxy::nft::{diff, render_change, render_delta};
use weft_proxy::{Compiler, ProxyNode, compile};

/// xorshift64*: a small deterministic generator, enough to drive the
/// sequences.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const SERVICES: u64 = 8;

/// A random Service `svc{i}`: type, protocol, families, affinity, traffic
/// policies, and external IPs drawn from a small pool, so that two
/// Services sometimes claim the same one.
fn random_service(rng: &mut Rng, i: u64) -> Service {
    let name = format!("svc{i}");
    if rng.chance(5) {
        return service(&name, json!({"clusterIP": "None", "ports": [{"port": 53}]}));
    }
    let kind = *rng.pick(&["ClusterIP", "NodePort", "LoadBalancer"]);
    let dual = rng.chance(30);
    let protocol = *rng.pick(&["TCP", "UDP"]);
    let mut ports =
        vec![json!({"name": "a", "port": 80, "protocol": protocol, "nodePort": 30000 + i * 2})];
    if rng.chance(30) {
        ports.push(json!({"name": "b", "port": 53, "protocol": "UDP", "nodePort": 30001 + i * 2}));
    }
    let mut spec = json!({
        "type": kind,
        "clusterIPs": if dual {
            json!([format!("10.96.0.{i}"), format!("fd00:96::{i}")])
        } else {
            json!([format!("10.96.0.{i}")])
        },
        "ipFamilies": if dual { json!(["IPv4", "IPv6"]) } else { json!(["IPv4"]) },
        "ports": ports,
        "externalTrafficPolicy": rng.pick(&["Cluster", "Local"]),
        "internalTrafficPolicy": rng.pick(&["Cluster", "Local"]),
    });
    if kind == "ClusterIP" {
        for port in spec["ports"].as_array_mut().unwrap() {
            port.as_object_mut().unwrap().remove("nodePort");
        }
        spec.as_object_mut()
            .unwrap()
            .remove("externalTrafficPolicy");
    }
    if rng.chance(20) {
        spec["sessionAffinity"] = json!("ClientIP");
        spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 60 + rng.below(3)}});
    }
    if rng.chance(30) {
        spec["externalIPs"] = json!([format!("192.0.2.{}", rng.below(3))]);
    }
    let status = if kind == "LoadBalancer" && rng.chance(50) {
        json!({"loadBalancer": {"ingress": [{"ip": format!("198.51.100.{}", rng.below(3))}]}})
    } else {
        json!({})
    };
    service_with_status(&name, spec, status)
}

/// A random slice of `svc{i}`: endpoints from a small shared pool of
/// addresses (so Services share endpoints), with random conditions and
/// nodes.
fn random_slice(rng: &mut Rng, i: u64, which: &str) -> EndpointSlice {
    let v6 = rng.chance(25);
    let n = rng.below(5);
    let endpoints: Vec<Value> = (0..n)
        .map(|_| {
            let host = rng.below(12);
            let ip = if v6 {
                format!("fd00:244:{}::{host}", rng.below(2) + 1)
            } else {
                format!("10.244.{}.{host}", rng.below(2) + 1)
            };
            let ready = rng.chance(70);
            json!({
                "addresses": [ip],
                "nodeName": rng.pick(&["node-a", "node-b"]),
                "conditions": {"ready": ready, "serving": ready || rng.chance(50),
                               "terminating": !ready && rng.chance(50)}
            })
        })
        .collect();
    let port = 8000 + rng.below(3);
    slice(
        &format!("svc{i}-{which}"),
        &format!("svc{i}"),
        if v6 { "IPv6" } else { "IPv4" },
        json!(endpoints),
        json!([{"name": "a", "port": port, "protocol": rng.pick(&["TCP", "UDP"])},
               {"name": "b", "port": 5353, "protocol": "UDP"}]),
    )
}

/// One random change to the cluster or the node.
fn mutate(
    rng: &mut Rng,
    services: &mut Vec<Service>,
    slices: &mut Vec<EndpointSlice>,
    node: &mut ProxyNode,
) {
    let i = rng.below(SERVICES);
    let name = format!("svc{i}");
    match rng.below(10) {
        0 | 1 => {
            services.retain(|s| s.name != name);
            services.push(random_service(rng, i));
        }
        2 => services.retain(|s| s.name != name),
        3..=7 => {
            let which = *rng.pick(&["a", "b"]);
            let slice_name = format!("{name}-{which}");
            slices.retain(|s| s.name != slice_name);
            if rng.chance(85) {
                slices.push(random_slice(rng, i, which));
            }
        }
        8 => {
            // The same inputs in another order.
            let k = rng.below(services.len().max(1) as u64) as usize;
            let k = k.min(services.len());
            services.rotate_left(k);
            slices.reverse();
        }
        _ => {
            if rng.chance(30) {
                node.node_ips.rotate_left(1);
                node.node_ips.truncate(1 + rng.below(2) as usize);
                if node.node_ips.len() < 2 {
                    node.node_ips.push("fd50::2".parse().unwrap());
                }
            }
        }
    }
}

#[test]
fn incremental_equals_scratch_over_random_sequences() {
    // What the sequences exercised, so that the test cannot pass by
    // generating nothing but no-ops.
    let (mut element_changes, mut reshapes, mut recompiles) = (0, 0, 0);
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut services: Vec<Service> =
            (0..SERVICES).map(|i| random_service(&mut rng, i)).collect();
        let mut slices: Vec<EndpointSlice> = (0..SERVICES)
            .map(|i| random_slice(&mut rng, i, "a"))
            .collect();
        let mut node = node();
        let mut compiler = Compiler::new();
        let first = compiler.update(&services, &slices, &node);
        assert!(first.change.full, "the first pass loads the whole table");
        assert_eq!(
            first.recompiled,
            services.iter().filter(|s| s.is_proxied()).count()
        );
        for step in 0..60 {
            let before = compiler.ruleset().clone();
            mutate(&mut rng, &mut services, &mut slices, &mut node);
            let update = compiler.update(&services, &slices, &node);
            let scratch = compile(&services, &slices, &node);
            element_changes += usize::from(!update.change.map_elements.is_empty());
            reshapes += usize::from(update.change.reshapes());
            recompiles += update.recompiled;
            let at = format!("seed {seed}, step {step}");
            assert_eq!(compiler.ruleset(), &scratch, "{at}: table");
            assert_eq!(update.change, diff(&before, &scratch), "{at}: change");
            assert_eq!(
                render_change(&update.change, compiler.ruleset()),
                render_delta(&before, &scratch),
                "{at}: rendered change"
            );
            let mut fresh = Compiler::new();
            fresh.update(&services, &slices, &node);
            assert_eq!(compiler.hash(), fresh.hash(), "{at}: hash");
            let unchanged = compiler.update(&services, &slices, &node);
            assert!(
                unchanged.change.is_empty(),
                "{at}: a repeated pass changes nothing"
            );
            assert_eq!(unchanged.recompiled, 0, "{at}: nor recompiles anything");
        }
    }
    assert!(
        element_changes > 500 && reshapes > 300 && recompiles > 1000,
        "{element_changes} element changes, {reshapes} reshapes, {recompiles} recompiles"
    );
}

#[test]
fn one_endpoint_recompiles_one_service() {
    let (services, mut slices) = cluster();
    let mut compiler = Compiler::new();
    compiler.update(&services, &slices, &node());
    let web = slices.iter_mut().find(|s| s.name == "web-b").unwrap();
    web.endpoints.push(web.endpoints[0].clone());
    web.endpoints[1].addresses = vec!["10.244.2.99".parse().unwrap()];
    let update = compiler.update(&services, &slices, &node());
    assert_eq!((update.recompiled, update.removed), (1, 0));
    // One backend element more, the pick chain's one rule with the new
    // count; nothing else.
    let c = &update.change;
    assert!(!c.full && !c.reshapes(), "{c:?}");
    assert!(c.set_elements.is_empty(), "{c:?}");
    assert_eq!(c.map_elements.len(), 1, "{c:?}");
    assert_eq!(c.changed_chains.len(), 1, "{c:?}");
}

#[test]
fn hash_differs_when_the_table_does() {
    let (services, slices) = cluster();
    let mut a = Compiler::new();
    a.update(&services, &slices, &node());
    let mut b = Compiler::new();
    b.update(&services[1..], &slices, &node());
    assert_ne!(a.hash(), b.hash());
    let mut other_node = node();
    other_node.node_ips.pop();
    let mut c = Compiler::new();
    c.update(&services, &slices, &other_node);
    assert_ne!(a.hash(), c.hash());
}
