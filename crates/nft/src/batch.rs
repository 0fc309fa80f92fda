//! The difference between two rulesets as a netlink transaction
//! ([`weft_netlink::NftBatch`]) instead of `nft -f` text, for the changes
//! that happen all the time: set and map elements, and the rules of a few
//! chains. `nft -f` must read the table back before it applies anything
//! (tens of milliseconds at 10,000 chains); the kernel applies such a batch
//! in well under a millisecond.
//!
//! Only what is encoded here exactly as nft encodes it goes this way
//! (checked against `nft --debug=netlink` and by reading the result back
//! with `nft list` in the kernel tests): elements of plain sets and maps
//! whose types are addresses, protocols, ports, 32-bit numbers (`numgen`
//! keys) and verdicts, and rules of the shapes [`rule`] knows. Anything
//! else (a set or chain that appears or goes, an interval or dynamic set,
//! another rule) makes [`delta_batch`] answer [`Unsupported`], and the
//! caller applies [`crate::render_delta`] through `nft` as before.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use weft_netlink::{
    NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NftBatch, NftCmpOp, NftData, NftElement, NftExpr,
    NftMetaKey, NftPayloadBase, NftVerdict,
};

use super::change::{Change, MapElements, SetElements, diff};
use super::{MapDef, Ruleset, SetDef};

/// Why a delta cannot go as a netlink batch: the caller renders it for
/// `nft -f` instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not encodable as a netlink batch: {0}")]
pub struct Unsupported(pub String);

type Out<T> = Result<T, Unsupported>;

fn unsupported<T>(what: impl Into<String>) -> Out<T> {
    Err(Unsupported(what.into()))
}

/// The transaction that turns the table loaded from `old` into `new`, with
/// the same effect and order as [`crate::render_delta`]'s (deleted
/// elements before added ones, then flushed and refilled chains), as one
/// netlink batch. `Ok(None)` when the two are equal.
pub fn delta_batch(old: &Ruleset, new: &Ruleset) -> Out<Option<NftBatch>> {
    change_batch(&diff(old, new), new)
}

/// [`delta_batch`] of a [`Change`] already known: `new` is the ruleset the
/// change leads to, where the types of the changed sets and maps are read.
pub fn change_batch(change: &Change, new: &Ruleset) -> Out<Option<NftBatch>> {
    if change.full {
        return unsupported("the table must be replaced whole");
    }
    if change.reshapes() {
        return unsupported("sets, maps or chains appear or go");
    }
    let (family, table) = table_name(&new.table)?;
    let mut batch = NftBatch::new(family);
    for (name, elements) in &change.set_elements {
        let Some(set) = new.sets.get(name) else {
            return unsupported(format!("elements of set {name}, which is not in the table"));
        };
        set_elements(&mut batch, table, name, set, elements)?;
    }
    for (name, elements) in &change.map_elements {
        let Some(map) = new.maps.get(name) else {
            return unsupported(format!("elements of map {name}, which is not in the table"));
        };
        map_elements(&mut batch, table, name, map, elements)?;
    }
    for (name, rules) in &change.changed_chains {
        batch.flush_chain(table, name);
        for text in rules {
            batch.add_rule(table, name, &rule(text)?);
        }
    }
    Ok((!batch.is_empty()).then_some(batch))
}

/// The table's family and name from `inet weft-proxy`.
fn table_name(table: &str) -> Out<(u8, &str)> {
    match table.split_once(' ') {
        Some(("inet", name)) => Ok((NFPROTO_INET, name)),
        Some(("ip", name)) => Ok((NFPROTO_IPV4, name)),
        Some(("ip6", name)) => Ok((NFPROTO_IPV6, name)),
        _ => unsupported(format!("table {table}")),
    }
}

fn set_elements(
    batch: &mut NftBatch,
    table: &str,
    name: &str,
    set: &SetDef,
    change: &SetElements,
) -> Out<()> {
    if !set.flags.is_empty() {
        return unsupported(format!("set {name} has flags {}", set.flags.join(",")));
    }
    let key = Layout::parse(&set.typ)?;
    let encode = |texts: &[String]| -> Out<Vec<NftElement>> {
        texts
            .iter()
            .map(|t| {
                Ok(NftElement {
                    key: key.encode(t)?,
                    data: None,
                    comment: None,
                })
            })
            .collect()
    };
    push(
        batch,
        table,
        name,
        encode(&change.removed)?,
        encode(&change.added)?,
    );
    Ok(())
}

fn map_elements(
    batch: &mut NftBatch,
    table: &str,
    name: &str,
    map: &MapDef,
    change: &MapElements,
) -> Out<()> {
    let (key_type, typeof_) = match map.key_type.strip_prefix("typeof ") {
        Some(expr) => (expr, true),
        None => (map.key_type.as_str(), false),
    };
    let key = Layout::parse(key_type)?;
    let verdict = !typeof_ && map.value_type == "verdict";
    let value = if verdict {
        None
    } else {
        Some(Layout::parse(&map.value_type)?)
    };
    let encode = |elements: &[(String, String)]| -> Out<Vec<NftElement>> {
        elements
            .iter()
            .map(|(k, v)| {
                let data = match &value {
                    None => NftData::Verdict(parse_verdict(v)?),
                    Some(layout) => NftData::Value(layout.encode(v)?),
                };
                Ok(NftElement {
                    key: key.encode(k)?,
                    data: Some(data),
                    comment: None,
                })
            })
            .collect()
    };
    // A changed value is a delete and an add of the key.
    push(
        batch,
        table,
        name,
        encode(&change.removed)?,
        encode(&change.added)?,
    );
    Ok(())
}

fn push(
    batch: &mut NftBatch,
    table: &str,
    name: &str,
    gone: Vec<NftElement>,
    added: Vec<NftElement>,
) {
    if !gone.is_empty() {
        batch.delete_elements(table, name, &gone);
    }
    if !added.is_empty() {
        batch.add_elements(table, name, &added);
    }
}

/// One part of a key or value, by how nft stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// 4 bytes, network order.
    V4,
    /// 16 bytes, network order.
    V6,
    /// 1 byte.
    Proto,
    /// 2 bytes, network order.
    Port,
    /// 4 bytes, host order (`numgen`, `mark`).
    Host32,
}

/// The parts of a key or value type, and how they are laid out.
#[derive(Debug)]
struct Layout(Vec<Part>);

impl Layout {
    /// From a type (`ipv4_addr . inet_service`) or a `typeof` expression
    /// (`ip daddr . tcp dport`, `numgen random mod 1`).
    fn parse(typ: &str) -> Out<Layout> {
        typ.split(" . ")
            .map(|part| {
                Ok(match part {
                    "ipv4_addr" | "ip saddr" | "ip daddr" => Part::V4,
                    "ipv6_addr" | "ip6 saddr" | "ip6 daddr" => Part::V6,
                    "inet_proto" | "meta l4proto" => Part::Proto,
                    "inet_service" => Part::Port,
                    "mark" | "meta mark" => Part::Host32,
                    p if p.starts_with("numgen ") => Part::Host32,
                    p if ["tcp", "udp", "sctp", "th"]
                        .iter()
                        .any(|l4| [" sport", " dport"].iter().any(|d| p == format!("{l4}{d}"))) =>
                    {
                        Part::Port
                    }
                    other => return unsupported(format!("type {other}")),
                })
            })
            .collect::<Out<Vec<_>>>()
            .map(Layout)
    }

    /// The bytes of `text` (`10.96.0.1 . tcp . 80`): each part in its
    /// width, padded to 4 bytes in a concatenation.
    fn encode(&self, text: &str) -> Out<Vec<u8>> {
        let texts: Vec<&str> = text.split(" . ").collect();
        if texts.len() != self.0.len() {
            return unsupported(format!("element {text}"));
        }
        let mut out = Vec::with_capacity(self.0.len() * 4);
        for (part, t) in self.0.iter().zip(texts) {
            let bad = || Unsupported(format!("element part {t}"));
            match part {
                Part::V4 => out.extend(t.parse::<Ipv4Addr>().map_err(|_| bad())?.octets()),
                Part::V6 => out.extend(t.parse::<Ipv6Addr>().map_err(|_| bad())?.octets()),
                Part::Proto => out.push(protocol_number(t).ok_or_else(bad)?),
                Part::Port => out.extend(t.parse::<u16>().map_err(|_| bad())?.to_be_bytes()),
                Part::Host32 => out.extend(t.parse::<u32>().map_err(|_| bad())?.to_ne_bytes()),
            }
            if self.0.len() > 1 {
                while out.len() % 4 != 0 {
                    out.push(0);
                }
            }
        }
        Ok(out)
    }
}

fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        n => n.parse().ok(),
    }
}

fn parse_verdict(text: &str) -> Out<NftVerdict> {
    match text.split_once(' ') {
        None if text == "accept" => Ok(NftVerdict::Accept),
        None if text == "drop" => Ok(NftVerdict::Drop),
        Some(("jump", chain)) if is_name(chain) => Ok(NftVerdict::Jump(chain.to_owned())),
        Some(("goto", chain)) if is_name(chain) => Ok(NftVerdict::Goto(chain.to_owned())),
        _ => unsupported(format!("verdict {text}")),
    }
}

/// A bare set, map or chain name as the compilers write them.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.'))
}

/// The expressions of one rule, for the shapes the compilers write in
/// chains that change with endpoints:
///
/// - `accept`, `drop`, `jump C`, `goto C`;
/// - `ip saddr != @S jump C` (and `ip6`, `==`, `goto`);
/// - `meta l4proto P dnat ip to A:PORT` (`ip6` with `[A]:PORT`);
/// - `meta l4proto P dnat ip to numgen random mod N offset B map @M`.
fn rule(text: &str) -> Out<Vec<NftExpr>> {
    let words: Vec<&str> = text.split(' ').collect();
    let other = || unsupported(format!("rule {text}"));
    match words[..] {
        [v] => Ok(vec![verdict_expr(parse_verdict(v)?)]),
        [v, chain] => Ok(vec![verdict_expr(parse_verdict(&format!("{v} {chain}"))?)]),
        [kw, "saddr", op, set, v, chain] => {
            let (family, offset, len) = match kw {
                "ip" => (NFPROTO_IPV4, 12, 4),
                "ip6" => (NFPROTO_IPV6, 8, 16),
                _ => return other(),
            };
            let invert = match op {
                "!=" => true,
                "==" => false,
                _ => return other(),
            };
            let Some(set) = set.strip_prefix('@').filter(|s| is_name(s)) else {
                return other();
            };
            Ok(vec![
                // In an inet table nft checks the family before reading the
                // network header.
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
                    set: set.to_owned(),
                    sreg: 1,
                    dreg: None,
                    invert,
                },
                verdict_expr(parse_verdict(&format!("{v} {chain}"))?),
            ])
        }
        [
            "meta",
            "l4proto",
            proto,
            "dnat",
            kw,
            "to",
            "numgen",
            "random",
            "mod",
            n,
            "offset",
            b,
            "map",
            map,
        ] => {
            let (family, reg_proto) = match kw {
                // The value `address . port` fills registers from 1: the
                // port is the 4-byte register after the address.
                "ip" => (NFPROTO_IPV4, 9),
                "ip6" => (NFPROTO_IPV6, 2),
                _ => return other(),
            };
            let (Some(proto), Ok(modulus), Ok(offset), Some(map)) = (
                protocol_number(proto),
                n.parse::<u32>(),
                b.parse::<u32>(),
                map.strip_prefix('@').filter(|m| is_name(m)),
            ) else {
                return other();
            };
            Ok([
                &l4proto_is(proto)[..],
                &[
                    NftExpr::NumgenRandom {
                        dreg: 1,
                        modulus,
                        offset,
                    },
                    NftExpr::Lookup {
                        set: map.to_owned(),
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
                ],
            ]
            .concat())
        }
        ["meta", "l4proto", proto, "dnat", kw, "to", target] => {
            let Some(proto) = protocol_number(proto) else {
                return other();
            };
            let (family, addr, port) = match (kw, target.rsplit_once(':')) {
                ("ip", Some((a, p))) => {
                    (NFPROTO_IPV4, a.parse::<Ipv4Addr>().ok().map(IpAddr::V4), p)
                }
                ("ip6", Some((a, p))) => (
                    NFPROTO_IPV6,
                    a.strip_prefix('[')
                        .and_then(|a| a.strip_suffix(']'))
                        .and_then(|a| a.parse::<Ipv6Addr>().ok())
                        .map(IpAddr::V6),
                    p,
                ),
                _ => return other(),
            };
            let (Some(addr), Ok(port)) = (addr, port.parse::<u16>()) else {
                return other();
            };
            let addr = match addr {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            Ok([
                &l4proto_is(proto)[..],
                &[
                    NftExpr::Immediate {
                        dreg: 1,
                        data: NftData::Value(addr),
                    },
                    NftExpr::Immediate {
                        dreg: 2,
                        data: NftData::Value(port.to_be_bytes().to_vec()),
                    },
                    // NF_NAT_RANGE_PROTO_SPECIFIED, as nft sends it here.
                    NftExpr::Dnat {
                        family,
                        reg_addr: 1,
                        reg_proto: Some(2),
                        flags: 2,
                    },
                ],
            ]
            .concat())
        }
        _ => other(),
    }
}

/// `meta l4proto P`: load the protocol, compare.
fn l4proto_is(proto: u8) -> [NftExpr; 2] {
    [
        NftExpr::Meta {
            key: NftMetaKey::L4Proto,
            dreg: 1,
        },
        NftExpr::Cmp {
            sreg: 1,
            op: NftCmpOp::Eq,
            data: vec![proto],
        },
    ]
}

fn verdict_expr(verdict: NftVerdict) -> NftExpr {
    NftExpr::Immediate {
        dreg: 0,
        data: NftData::Verdict(verdict),
    }
}

#[cfg(test)]
mod tests;
