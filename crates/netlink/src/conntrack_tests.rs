use super::*;

fn entry(v6: bool) -> CtEntry {
    let (client, front, endpoint): (IpAddr, IpAddr, IpAddr) = if v6 {
        (
            "fd00:244:1::5".parse().unwrap(),
            "fd00:96::a".parse().unwrap(),
            "fd00:244:2::7".parse().unwrap(),
        )
    } else {
        (
            "10.244.1.5".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
            "10.244.2.7".parse().unwrap(),
        )
    };
    CtEntry {
        protocol: 17,
        orig: CtTuple {
            src: client,
            dst: front,
            sport: 40000,
            dport: 53,
        },
        reply: CtTuple {
            src: endpoint,
            dst: client,
            sport: 5353,
            dport: 40000,
        },
        zone: 0,
        id: 0x0102_0304,
    }
}

/// A dump reply as the kernel writes it: nfgenmsg, the two tuples, the id.
fn reply_body(e: &CtEntry) -> Vec<u8> {
    let mut body = vec![family(e.orig.dst.is_ipv6()), 0, 0, 0];
    for (kind, tuple) in [(CTA_TUPLE_ORIG, &e.orig), (CTA_TUPLE_REPLY, &e.reply)] {
        let mut t = Vec::new();
        tuple_attrs(&mut t, e.protocol, tuple);
        nested(&mut body, kind, &t);
    }
    attr(&mut body, CTA_ID, &e.id.to_be_bytes());
    body
}

#[test]
fn entries_parse_back_in_both_families() {
    for v6 in [false, true] {
        let e = entry(v6);
        assert_eq!(parse_entry(&reply_body(&e)), Some(e));
    }
}

#[test]
fn tuple_attributes_are_laid_out_as_ctnetlink_reads_them() {
    let mut t = Vec::new();
    tuple_attrs(&mut t, 17, &entry(false).orig);
    #[rustfmt::skip]
    let want: Vec<u8> = [
        // CTA_TUPLE_IP (nested), 20 bytes: v4 src, v4 dst.
        &[20, 0, 1, 0x80][..], &[8, 0, 1, 0, 10, 244, 1, 5], &[8, 0, 2, 0, 10, 96, 0, 10],
        // CTA_TUPLE_PROTO (nested), 28 bytes: number (padded), ports.
        &[28, 0, 2, 0x80], &[5, 0, 1, 0, 17, 0, 0, 0],
        &[6, 0, 2, 0, 0x9c, 0x40, 0, 0], &[6, 0, 3, 0, 0, 53, 0, 0],
    ]
    .concat();
    assert_eq!(t, want);
}

#[test]
fn a_reply_without_tuples_is_skipped() {
    let mut body = vec![AF_INET, 0, 0, 0];
    attr(&mut body, CTA_ID, &7u32.to_be_bytes());
    assert_eq!(parse_entry(&body), None);
    assert_eq!(parse_entry(&[]), None);
}
