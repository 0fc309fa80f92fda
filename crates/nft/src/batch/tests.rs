//! What [`delta_batch`] encodes and what it leaves to `nft -f`. The bytes
//! are those `nft --debug=netlink` shows for the same elements; the
//! kernel tests of `weft_netlink` and `weft_proxy` read committed batches
//! back with `nft list`.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::BaseChain;

#[test]
fn keys_and_values_are_laid_out_as_nft_stores_them() {
    // `element 0100600a 00000006 00005000 : goto -> svc4`.
    let key = Layout::parse("ipv4_addr . inet_proto . inet_service").unwrap();
    assert_eq!(
        key.encode("10.96.0.1 . tcp . 80").unwrap(),
        [10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0]
    );
    // `element 00010000 : 0100000a 0000901f`.
    let numgen = Layout::parse("numgen random mod 1").unwrap();
    assert_eq!(numgen.encode("65536").unwrap(), 65536u32.to_ne_bytes());
    let value = Layout::parse("ip daddr . tcp dport").unwrap();
    assert_eq!(
        value.encode("10.0.0.1 . 8080").unwrap(),
        [10, 0, 0, 1, 0x1f, 0x90, 0, 0]
    );
    let v6 = Layout::parse("ip6 daddr . udp dport").unwrap();
    let bytes = v6.encode("fd00::1 . 53").unwrap();
    assert_eq!(bytes.len(), 20);
    assert_eq!(&bytes[16..], [0, 53, 0, 0]);
    // A single part keeps its own width: `agent_state`'s `inet_service`.
    assert_eq!(
        Layout::parse("inet_service").unwrap().encode("0").unwrap(),
        [0, 0]
    );
    let pair = Layout::parse("ipv4_addr . ipv4_addr").unwrap();
    assert_eq!(
        pair.encode("10.0.0.1 . 10.0.0.1").unwrap(),
        [10, 0, 0, 1, 10, 0, 0, 1]
    );
    assert!(Layout::parse("ifname").is_err());
    assert!(key.encode("10.96.0.1 . tcp").is_err());
    assert!(key.encode("10.96.0.1 . tcp . http").is_err());
}

#[test]
fn rule_shapes() {
    let pick =
        rule("meta l4proto tcp dnat ip to numgen random mod 3 offset 65536 map @backends4-tcp-01")
            .unwrap();
    assert_eq!(
        pick,
        [
            NftExpr::Meta {
                key: NftMetaKey::L4Proto,
                dreg: 1
            },
            NftExpr::Cmp {
                sreg: 1,
                op: NftCmpOp::Eq,
                data: vec![6]
            },
            NftExpr::NumgenRandom {
                dreg: 1,
                modulus: 3,
                offset: 65536
            },
            NftExpr::Lookup {
                set: "backends4-tcp-01".into(),
                sreg: 1,
                dreg: Some(1),
                invert: false
            },
            NftExpr::Dnat {
                family: NFPROTO_IPV4,
                reg_addr: 1,
                reg_proto: Some(9),
                flags: 0
            },
        ]
    );
    let mark = rule("ip6 saddr != @cluster_cidrs6 jump mark_for_masquerade").unwrap();
    assert_eq!(
        mark[1],
        NftExpr::Cmp {
            sreg: 1,
            op: NftCmpOp::Eq,
            data: vec![10]
        }
    );
    assert_eq!(
        mark[2],
        NftExpr::Payload {
            base: NftPayloadBase::Network,
            offset: 8,
            len: 16,
            dreg: 1
        }
    );
    let one = rule("meta l4proto udp dnat ip6 to [fd00::1]:53").unwrap();
    assert_eq!(
        one[2],
        NftExpr::Immediate {
            dreg: 1,
            data: NftData::Value("fd00::1".parse::<Ipv6Addr>().unwrap().octets().to_vec())
        }
    );
    assert_eq!(
        one[3],
        NftExpr::Immediate {
            dreg: 2,
            data: NftData::Value(vec![0, 53])
        }
    );
    assert_eq!(
        rule("goto svc4-x").unwrap(),
        [verdict_expr(NftVerdict::Goto("svc4-x".into()))]
    );
    assert_eq!(rule("drop").unwrap(), [verdict_expr(NftVerdict::Drop)]);
    for other in [
        "numgen random mod 2 == 0 meta l4proto tcp dnat ip to 10.0.0.1:80",
        "ip saddr @aff4-1 goto ep-1",
        "fib saddr type local goto x",
        "meta l4proto tcp dnat ip to 10.0.0.1",
        "update @aff4-1 { ip saddr timeout 10s }",
    ] {
        assert!(rule(other).is_err(), "{other}");
    }
}

fn ruleset() -> Ruleset {
    let mut r = Ruleset::new("inet weft-proxy");
    r.sets.insert(
        "hairpin4".into(),
        SetDef {
            typ: "ipv4_addr . ipv4_addr".into(),
            flags: vec![],
            elements: BTreeSet::from(["10.0.0.1 . 10.0.0.1".to_owned()]),
        },
    );
    r.sets.insert(
        "cidrs".into(),
        SetDef {
            typ: "ipv4_addr".into(),
            flags: vec!["interval".into()],
            elements: BTreeSet::from(["10.0.0.0/8".to_owned()]),
        },
    );
    r.maps.insert(
        "backends4-tcp-01".into(),
        MapDef {
            key_type: "typeof numgen random mod 1".into(),
            value_type: "ip daddr . tcp dport".into(),
            elements: BTreeMap::from([
                ("0".to_owned(), "10.0.0.1 . 80".to_owned()),
                ("1".to_owned(), "10.0.0.2 . 80".to_owned()),
            ]),
        },
    );
    r.maps.insert(
        "service_ips4".into(),
        MapDef {
            key_type: "ipv4_addr . inet_proto . inet_service".into(),
            value_type: "verdict".into(),
            elements: BTreeMap::from([("10.96.0.1 . tcp . 80".to_owned(), "goto svc".to_owned())]),
        },
    );
    r.chains.insert(
        "svc".into(),
        vec![
            "meta l4proto tcp dnat ip to numgen random mod 2 offset 0 map @backends4-tcp-01".into(),
        ],
    );
    r.base_chains.insert(
        "nat_output".into(),
        BaseChain {
            hook: "type nat hook output priority -100; policy accept;".into(),
            rules: vec!["ip daddr . meta l4proto . th dport vmap @service_ips4".into()],
        },
    );
    r
}

#[test]
fn endpoint_change_is_one_batch() {
    let old = ruleset();
    assert!(delta_batch(&old, &old).unwrap().is_none());
    let mut new = old.clone();
    let map = new.maps.get_mut("backends4-tcp-01").unwrap();
    map.elements.insert("1".into(), "10.0.0.3 . 80".into());
    map.elements.insert("2".into(), "10.0.0.4 . 80".into());
    new.chains.insert(
        "svc".into(),
        vec![
            "meta l4proto tcp dnat ip to numgen random mod 3 offset 0 map @backends4-tcp-01".into(),
        ],
    );
    new.sets
        .get_mut("hairpin4")
        .unwrap()
        .elements
        .insert("10.0.0.4 . 10.0.0.4".into());
    let batch = delta_batch(&old, &new).unwrap().unwrap();
    // hairpin add; backends delete (changed key 1) and add (1, 2); flush;
    // one rule.
    assert_eq!(batch.len(), 5);
}

#[test]
fn what_nft_must_do() {
    let old = ruleset();
    type Change = Box<dyn Fn(&mut Ruleset)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "interval set",
            Box::new(|r| {
                r.sets
                    .get_mut("cidrs")
                    .unwrap()
                    .elements
                    .insert("11.0.0.0/8".into());
            }),
        ),
        (
            "new chain",
            Box::new(|r| {
                r.chains.insert("other".into(), vec![]);
            }),
        ),
        (
            "new map",
            Box::new(|r| {
                r.maps.insert(
                    "backends4-tcp-02".into(),
                    r.maps["backends4-tcp-01"].clone(),
                );
            }),
        ),
        (
            "unknown rule",
            Box::new(|r| {
                r.chains
                    .insert("svc".into(), vec!["ip saddr @aff4-1 goto ep-1".into()]);
            }),
        ),
        (
            "retyped set",
            Box::new(|r| {
                r.sets.get_mut("hairpin4").unwrap().typ = "ipv4_addr".into();
            }),
        ),
    ];
    for (what, change) in cases {
        let mut new = old.clone();
        change(&mut new);
        assert!(delta_batch(&old, &new).is_err(), "{what}");
        assert!(crate::render_delta(&old, &new).is_some(), "{what}");
    }
}
