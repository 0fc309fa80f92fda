//! Unit tier: golden JSON of a dual-stack result in every version, and
//! prevResult parsing of each version's encoding back to the same result.
//! Regenerate after an intended change with `WEFT_BLESS=1 cargo test -p weft-cni --test golden`.

use std::path::PathBuf;

use weft_cni::wire::result::{CniResult, Dns, Interface, IpConfig, Route};
use weft_cni::wire::version::SUPPORTED_VERSIONS;

fn sample() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "weft1a2b3c4d5e6".into(),
                mac: "ee:ee:ee:ee:ee:ee".into(),
                mtu: Some(1450),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mac: "0a:58:0a:f4:01:05".into(),
                mtu: Some(1450),
                sandbox: "/run/netns/cni-1234".into(),
                ..Interface::default()
            },
        ],
        ips: vec![
            IpConfig {
                address: "10.244.1.5/32".parse().unwrap(),
                gateway: Some("169.254.1.1".parse().unwrap()),
                interface: Some(1),
            },
            IpConfig {
                address: "fd00:10:244:1::5/128".parse().unwrap(),
                gateway: Some("fe80::1".parse().unwrap()),
                interface: Some(1),
            },
        ],
        routes: vec![
            Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("169.254.1.1".parse().unwrap()),
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            },
            Route {
                dst: "::/0".parse().unwrap(),
                gw: Some("fe80::1".parse().unwrap()),
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            },
        ],
        dns: Dns {
            nameservers: vec!["10.96.0.10".into()],
            domain: String::new(),
            search: vec!["default.svc.cluster.local".into()],
            options: vec![],
        },
    }
}

fn fixture(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/result-{version}.json"))
}

#[test]
fn results_match_golden_json_per_version() {
    for v in SUPPORTED_VERSIONS {
        let got = serde_json::to_string_pretty(&sample().to_json(v).unwrap()).unwrap() + "\n";
        let path = fixture(v);
        if std::env::var_os("WEFT_BLESS").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (bless with WEFT_BLESS=1)", path.display()));
        assert_eq!(got, want, "result in {v} differs from {}", path.display());
    }
}

#[test]
fn each_encoding_parses_back() {
    for v in SUPPORTED_VERSIONS {
        let json = sample().to_json(v).unwrap();
        let back = CniResult::from_json(&json).unwrap();
        let expected = if *v < "0.3.0" {
            // 0.1/0.2 keep only addresses, routes and DNS.
            CniResult {
                interfaces: vec![],
                ips: sample()
                    .ips
                    .into_iter()
                    .map(|i| IpConfig {
                        interface: None,
                        ..i
                    })
                    .collect(),
                ..sample()
            }
        } else if *v < "1.0.0" {
            // 0.3.x/0.4.0 lose the 1.1 interface fields.
            CniResult {
                interfaces: sample()
                    .interfaces
                    .into_iter()
                    .map(|i| Interface { mtu: None, ..i })
                    .collect(),
                ..sample()
            }
        } else {
            sample()
        };
        assert_eq!(back, expected, "round trip through {v}");
    }
}

#[test]
fn legacy_conversion_without_addresses_is_an_error() {
    let empty = CniResult::default();
    assert_eq!(empty.to_json("0.2.0").unwrap_err().code, 1);
    assert!(empty.to_json("1.1.0").is_ok());
}
