//! `ipBlock` as disjoint address ranges: `cidr` minus every `except`.
//!
//! Computed here rather than in nft because the alternative, an anonymous
//! `except` set inside each rule, is what notes/NFTABLES.md measured as
//! ruinous at scale; a named interval set of the difference costs one set
//! shared by every rule with the same block.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use weft_model::IpBlock;

/// The addresses of `block` as nft interval-set elements, ascending and
/// disjoint: the whole CIDR as a prefix (`10.0.0.0/8`), a single address,
/// or an inclusive range (`10.0.0.0-10.0.255.255`). Empty when the
/// exceptions cover the block. Exceptions of the other family or outside
/// the CIDR are ignored (validation rejects them; this stays total).
pub(crate) fn block_elements(block: &IpBlock) -> Vec<String> {
    let v4 = matches!(block.cidr, IpNet::V4(_));
    let whole = bounds(&block.cidr);
    let mut holes: Vec<(u128, u128)> = block
        .except
        .iter()
        .filter(|e| matches!(e, IpNet::V4(_)) == v4)
        .map(bounds)
        .filter(|(s, e)| *e >= whole.0 && *s <= whole.1)
        .map(|(s, e)| (s.max(whole.0), e.min(whole.1)))
        .collect();
    holes.sort_unstable();
    let mut ranges = Vec::new();
    // `None` once the holes reach the CIDR's last address (no overflow).
    let mut next = Some(whole.0);
    for (start, end) in holes {
        let Some(from) = next else { break };
        if start > from {
            ranges.push((from, start - 1));
        }
        if end >= from {
            next = (end < whole.1).then(|| end + 1);
        }
    }
    if let Some(from) = next {
        ranges.push((from, whole.1));
    }
    ranges
        .into_iter()
        .map(|(s, e)| {
            if (s, e) == whole {
                block.cidr.trunc().to_string()
            } else if s == e {
                addr(v4, s).to_string()
            } else {
                format!("{}-{}", addr(v4, s), addr(v4, e))
            }
        })
        .collect()
}

/// First and last address of a network, as integers.
fn bounds(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

fn addr(v4: bool, value: u128) -> IpAddr {
    if v4 {
        // Values come from IPv4 bounds, so they fit.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cidr: &str, except: &[&str]) -> IpBlock {
        IpBlock {
            cidr: cidr.parse().unwrap(),
            except: except.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn no_except_is_the_prefix() {
        assert_eq!(block_elements(&block("10.0.0.0/8", &[])), ["10.0.0.0/8"]);
    }

    #[test]
    fn except_in_the_middle_splits_in_two() {
        assert_eq!(
            block_elements(&block("10.0.0.0/24", &["10.0.0.64/26"])),
            ["10.0.0.0-10.0.0.63", "10.0.0.128-10.0.0.255"]
        );
    }

    #[test]
    fn excepts_at_both_ends_overlapping_and_unsorted() {
        assert_eq!(
            block_elements(&block(
                "10.0.0.0/24",
                &["10.0.0.240/28", "10.0.0.0/30", "10.0.0.0/31", "10.0.0.5/32"]
            )),
            ["10.0.0.4", "10.0.0.6-10.0.0.239"]
        );
    }

    #[test]
    fn full_family_with_except_reaches_the_last_address() {
        assert_eq!(
            block_elements(&block("0.0.0.0/0", &["10.0.0.0/8"])),
            ["0.0.0.0-9.255.255.255", "11.0.0.0-255.255.255.255"]
        );
        assert_eq!(
            block_elements(&block("::/0", &["8000::/1"])),
            ["::-7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
        );
    }

    #[test]
    fn except_covering_everything_leaves_nothing() {
        assert!(block_elements(&block("10.0.0.0/30", &["10.0.0.0/31", "10.0.0.2/31"])).is_empty());
    }
}
