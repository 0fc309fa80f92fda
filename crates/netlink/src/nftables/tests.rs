//! Byte-level tests of the encoding (the element bytes are those
//! `nft --debug=netlink` prints for the same elements), and a kernel test
//! that commits a batch and reads the table back with `nft list`.

use super::*;

/// The attributes of the first message after the batch's begin.
fn first_message(batch: &NftBatch) -> (u16, u16, Vec<u8>) {
    let bytes = batch.encode(7);
    let begin = u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let msg = &bytes[begin..];
    let len = u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize;
    let kind = u16::from_ne_bytes([msg[4], msg[5]]);
    let flags = u16::from_ne_bytes([msg[6], msg[7]]);
    (kind, flags, msg[20..len].to_vec())
}

#[test]
fn batch_is_framed_by_begin_and_end_with_sequence_numbers() {
    let mut batch = NftBatch::new(NFPROTO_INET);
    batch.flush_set("weft-proxy", "agent_state");
    let bytes = batch.encode(7);
    // begin: 20 bytes, type 0x10, seq 7, family AF_UNSPEC, res_id 10 (BE).
    assert_eq!(&bytes[0..4], &20u32.to_ne_bytes());
    assert_eq!(&bytes[4..6], &0x10u16.to_ne_bytes());
    assert_eq!(&bytes[8..12], &7u32.to_ne_bytes());
    assert_eq!(&bytes[16..20], &[0, 0, 0, 10]);
    // The message: NFT_MSG_DELSETELEM of subsystem 10, REQUEST|ACK, seq 8,
    // family inet.
    let msg = &bytes[20..];
    assert_eq!(&msg[4..6], &0x0a0eu16.to_ne_bytes());
    assert_eq!(&msg[6..8], &5u16.to_ne_bytes());
    assert_eq!(&msg[8..12], &8u32.to_ne_bytes());
    assert_eq!(&msg[16..20], &[NFPROTO_INET, 0, 0, 0]);
    // end: type 0x11, seq 9, last.
    let end = &bytes[bytes.len() - 20..];
    assert_eq!(&end[4..6], &0x11u16.to_ne_bytes());
    assert_eq!(&end[8..12], &9u32.to_ne_bytes());
}

#[test]
fn flush_set_is_a_delete_without_elements() {
    let mut batch = NftBatch::new(NFPROTO_INET);
    batch.flush_set("t", "s");
    let (_, _, attrs) = first_message(&batch);
    // TABLE "t\0" padded, SET "s\0" padded, nothing else.
    assert_eq!(
        attrs,
        [6, 0, 1, 0, b't', 0, 0, 0, 6, 0, 2, 0, b's', 0, 0, 0]
    );
}

#[test]
fn map_element_with_value_matches_nfts_bytes() {
    // nft: `add element inet t m { 65536 : 10.0.0.1 . 8080 }` on a
    // `typeof numgen random mod 1 : ip daddr . tcp dport` map shows
    // `element 00010000 : 0100000a 0000901f`: the key in host order, the
    // address and port in network order, the port padded to 4 bytes.
    let element = NftElement {
        key: 65536u32.to_ne_bytes().to_vec(),
        data: Some(NftData::Value(vec![10, 0, 0, 1, 0x1f, 0x90, 0, 0])),
        comment: None,
    };
    let mut batch = NftBatch::new(NFPROTO_INET);
    batch.add_elements("t", "m", &[element]);
    let (kind, flags, attrs) = first_message(&batch);
    assert_eq!(kind, 0x0a0c);
    assert_eq!(flags, 0x1 | 0x4 | 0x400);
    let want: Vec<u8> = [
        &[6, 0, 1, 0, b't', 0, 0, 0][..],
        &[6, 0, 2, 0, b'm', 0, 0, 0],
        // ELEMENTS (nested) > LIST_ELEM (nested) > KEY (nested) > VALUE.
        &[36, 0, 3, 0x80, 32, 0, 1, 0x80],
        &[12, 0, 1, 0x80, 8, 0, 1, 0, 0, 0, 1, 0],
        // DATA (nested) > VALUE: 10.0.0.1 . 8080.
        &[16, 0, 2, 0x80, 12, 0, 1, 0, 10, 0, 0, 1, 0x1f, 0x90, 0, 0],
    ]
    .concat();
    assert_eq!(attrs, want);
}

#[test]
fn verdict_and_comment_encodings() {
    let mut out = Vec::new();
    put_data(&mut out, &NftData::Verdict(NftVerdict::Goto("c".into())));
    // VERDICT (nested) > CODE -4 (BE), CHAIN "c\0".
    assert_eq!(
        out,
        [
            20, 0, 2, 0x80, 8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfc, 6, 0, 2, 0, b'c', 0, 0, 0
        ]
    );
    // nft shows `userdata = { \x00\x16weft-agent sha256=abc\x00 }`.
    let udata = comment_udata("weft-agent sha256=abc");
    assert_eq!(&udata[..2], &[0, 0x16]);
    assert_eq!(&udata[2..], b"weft-agent sha256=abc\0");
}

#[test]
fn rule_expressions_are_named_lists() {
    let mut batch = NftBatch::new(NFPROTO_INET);
    batch.add_rule(
        "t",
        "c",
        &[NftExpr::Meta {
            key: NftMetaKey::L4Proto,
            dreg: 1,
        }],
    );
    let (kind, flags, attrs) = first_message(&batch);
    assert_eq!(kind, 0x0a06);
    assert_eq!(flags, 0x1 | 0x4 | 0x400 | 0x800);
    let want: Vec<u8> = [
        &[6, 0, 1, 0, b't', 0, 0, 0][..],
        &[6, 0, 2, 0, b'c', 0, 0, 0],
        // EXPRESSIONS > LIST_ELEM > NAME "meta\0", DATA > DREG 1, KEY 16.
        &[40, 0, 4, 0x80, 36, 0, 1, 0x80],
        &[9, 0, 1, 0, b'm', b'e', b't', b'a', 0, 0, 0, 0],
        &[
            20, 0, 2, 0x80, 8, 0, 1, 0, 0, 0, 0, 1, 8, 0, 2, 0, 0, 0, 0, 16,
        ],
    ]
    .concat();
    assert_eq!(attrs, want);
}

#[test]
fn acks_and_reasons_are_read() {
    // An NLMSG_ERROR (EEXIST) with a capped echo and a reason.
    let mut msg = Vec::new();
    let body_len = 16 + 4 + 16 + 8;
    msg.extend_from_slice(&(body_len as u32).to_ne_bytes());
    msg.extend_from_slice(&2u16.to_ne_bytes());
    msg.extend_from_slice(&(0x100u16 | 0x200).to_ne_bytes());
    msg.extend_from_slice(&9u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&(-libc::EEXIST).to_ne_bytes());
    msg.extend_from_slice(&[0; 16]);
    msg.extend_from_slice(&[8, 0, 1, 0, b'b', b'a', b'd', 0]);
    assert_eq!(
        socket_acks(&msg),
        vec![(9, libc::EEXIST, Some("bad".to_owned()))]
    );
}

fn socket_acks(buf: &[u8]) -> Vec<(u32, i32, Option<String>)> {
    super::socket::acks_for_tests(buf).unwrap()
}

mod kernel {
    use super::*;
    use weft_testkit::{NetNs, privileged};

    const TABLE: &str = "\
table inet weft-t {
	set agent_state { type inet_service; }
	set hairpin4 { type ipv4_addr . ipv4_addr; }
	set cluster_cidrs4 { type ipv4_addr; flags interval; elements = { 10.244.0.0/16 } }
	set cluster_cidrs6 { type ipv6_addr; flags interval; }
	map backends4-tcp-01 { typeof numgen random mod 1 : ip daddr . tcp dport; }
	map backends6-udp-01 { typeof numgen random mod 1 : ip6 daddr . udp dport; }
	chain mark_for_masquerade { meta mark set meta mark or 0x4000; }
	chain svc4 { meta l4proto tcp dnat ip to 10.0.0.9:80; }
	chain svc6 { }
	map service_ips4 { type ipv4_addr . inet_proto . inet_service : verdict; }
}
add element inet weft-t backends4-tcp-01 { 65536 : 10.0.0.1 . 8080, 65537 : 10.0.0.2 . 8080 }
add element inet weft-t agent_state { 0 comment \"old\" }
";

    fn nft(ns: &NetNs, args: &[&str], stdin: Option<&str>) -> String {
        ns.exec_stdin("nft", args, stdin.unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn v4(a: [u8; 4], port: u16) -> Vec<u8> {
        let mut out = a.to_vec();
        out.extend_from_slice(&port.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn committed_batch_reads_back_as_nft_would_write_it() {
        if !privileged("nftables batch commit") {
            return;
        }
        let ns = NetNs::new("nlnft").unwrap();
        nft(&ns, &["-f", "-"], Some(TABLE));
        let table = "weft-t";
        let mut batch = NftBatch::new(NFPROTO_INET);
        let key = |k: u32| k.to_ne_bytes().to_vec();
        let element = |k: u32, data: Vec<u8>| NftElement {
            key: key(k),
            data: Some(NftData::Value(data)),
            comment: None,
        };
        batch
            .delete_elements(table, "backends4-tcp-01", &[element(65537, vec![])])
            .add_elements(
                table,
                "backends4-tcp-01",
                &[
                    element(65537, v4([10, 0, 0, 3], 9090)),
                    element(65538, v4([10, 0, 0, 4], 9090)),
                ],
            )
            .add_elements(
                table,
                "backends6-udp-01",
                &[element(
                    7,
                    [
                        &"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets()[..],
                        &[0, 53, 0, 0],
                    ]
                    .concat(),
                )],
            )
            .add_elements(
                table,
                "hairpin4",
                &[NftElement {
                    key: vec![10, 244, 1, 5, 10, 244, 1, 5],
                    data: None,
                    comment: None,
                }],
            )
            .add_elements(
                table,
                "service_ips4",
                &[NftElement {
                    key: vec![10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0],
                    data: Some(NftData::Verdict(NftVerdict::Goto("svc4".into()))),
                    comment: None,
                }],
            )
            .flush_set(table, "agent_state")
            .add_elements(
                table,
                "agent_state",
                &[NftElement {
                    key: 0u16.to_be_bytes().to_vec(),
                    data: None,
                    comment: Some("weft-agent sha256=abc".into()),
                }],
            )
            .flush_chain(table, "svc4")
            .add_rule(table, "svc4", &mark_rule(NFPROTO_IPV4, "cluster_cidrs4"))
            .add_rule(
                table,
                "svc4",
                &pick_rule(NFPROTO_IPV4, 6, 3, 65536, "backends4-tcp-01", 9),
            )
            .add_rule(table, "svc6", &mark_rule(NFPROTO_IPV6, "cluster_cidrs6"))
            .add_rule(
                table,
                "svc6",
                &pick_rule(NFPROTO_IPV6, 17, 1, 7, "backends6-udp-01", 2),
            );
        ns.run(|| NftSocket::new()?.commit(&batch))
            .unwrap()
            .unwrap();

        let list = |what: &[&str]| nft(&ns, &[&["list"][..], what].concat(), None);
        let backends = list(&["map", "inet", table, "backends4-tcp-01"]);
        assert!(
            backends.contains("elements = { 65536 : 10.0.0.1 . 8080, 65537 : 10.0.0.3 . 9090,")
                && backends.contains("65538 : 10.0.0.4 . 9090 }"),
            "{backends}"
        );
        assert!(
            list(&["map", "inet", table, "backends6-udp-01"])
                .contains("elements = { 7 : fd00::1 . 53 }")
        );
        assert!(
            list(&["set", "inet", table, "hairpin4"])
                .contains("elements = { 10.244.1.5 . 10.244.1.5 }")
        );
        assert!(
            list(&["map", "inet", table, "service_ips4"])
                .contains("elements = { 10.96.0.1 . tcp . 80 : goto svc4 }")
        );
        let state = list(&["set", "inet", table, "agent_state"]);
        assert!(
            state.contains("elements = { 0 comment \"weft-agent sha256=abc\" }"),
            "{state}"
        );
        let svc4 = list(&["chain", "inet", table, "svc4"]);
        assert!(
            svc4.contains(
                "\t\tip saddr != @cluster_cidrs4 jump mark_for_masquerade\n\t\tmeta l4proto tcp dnat ip to numgen random mod 3 offset 65536 map @backends4-tcp-01\n\t}"
            ),
            "{svc4}"
        );
        let svc6 = list(&["chain", "inet", table, "svc6"]);
        assert!(
            svc6.contains(
                "\t\tip6 saddr != @cluster_cidrs6 jump mark_for_masquerade\n\t\tmeta l4proto udp dnat ip6 to numgen random mod 1 offset 7 map @backends6-udp-01\n\t}"
            ),
            "{svc6}"
        );
    }

    #[test]
    fn a_refused_message_fails_the_whole_batch() {
        if !privileged("nftables batch atomicity") {
            return;
        }
        let ns = NetNs::new("nlnft").unwrap();
        nft(&ns, &["-f", "-"], Some(TABLE));
        let mut batch = NftBatch::new(NFPROTO_INET);
        batch
            .flush_set("weft-t", "agent_state")
            // No such key: ENOENT, and the flush above is undone.
            .delete_elements(
                "weft-t",
                "backends4-tcp-01",
                &[NftElement {
                    key: 1u32.to_ne_bytes().to_vec(),
                    data: None,
                    comment: None,
                }],
            );
        let err = ns
            .run(|| NftSocket::new()?.commit(&batch))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
        assert!(
            err.to_string()
                .contains("delete 1 element(s) from weft-t backends4-tcp-01"),
            "{err}"
        );
        let state = nft(&ns, &["list", "set", "inet", "weft-t", "agent_state"], None);
        assert!(state.contains("comment \"old\""), "{state}");
    }

    #[test]
    fn an_oversized_batch_is_refused_unsent() {
        if !privileged("nftables oversized batch") {
            return;
        }
        let ns = NetNs::new("nlnft").unwrap();
        nft(&ns, &["-f", "-"], Some(TABLE));
        let mut batch = NftBatch::new(NFPROTO_INET);
        for _ in 0..129 {
            batch.flush_set("weft-t", "agent_state");
        }
        let err = ns
            .run(|| NftSocket::new()?.commit(&batch))
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, crate::Error::Invalid(_)), "{err}");
        let state = nft(&ns, &["list", "set", "inet", "weft-t", "agent_state"], None);
        assert!(state.contains("comment \"old\""), "{state}");
    }

    fn mark_rule(family: u8, set: &str) -> Vec<NftExpr> {
        let (offset, len) = if family == NFPROTO_IPV4 {
            (12, 4)
        } else {
            (8, 16)
        };
        vec![
            NftExpr::Meta {
                key: NftMetaKey::NfProto,
                dreg: 1,
            },
            NftExpr::Cmp {
                sreg: 1,
                op: NftCmpOp::Eq,
                data: vec![family],
            },
            NftExpr::Payload {
                base: NftPayloadBase::Network,
                offset,
                len,
                dreg: 1,
            },
            NftExpr::Lookup {
                set: set.into(),
                sreg: 1,
                dreg: None,
                invert: true,
            },
            NftExpr::Immediate {
                dreg: 0,
                data: NftData::Verdict(NftVerdict::Jump("mark_for_masquerade".into())),
            },
        ]
    }

    fn pick_rule(
        family: u8,
        proto: u8,
        modulus: u32,
        offset: u32,
        map: &str,
        reg_proto: u32,
    ) -> Vec<NftExpr> {
        vec![
            NftExpr::Meta {
                key: NftMetaKey::L4Proto,
                dreg: 1,
            },
            NftExpr::Cmp {
                sreg: 1,
                op: NftCmpOp::Eq,
                data: vec![proto],
            },
            NftExpr::NumgenRandom {
                dreg: 1,
                modulus,
                offset,
            },
            NftExpr::Lookup {
                set: map.into(),
                sreg: 1,
                dreg: Some(1),
                invert: false,
            },
            NftExpr::Dnat {
                family,
                reg_addr: 1,
                reg_proto: Some(reg_proto),
                flags: 0,
            },
        ]
    }
}
