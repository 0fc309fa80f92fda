//! The node's pod CIDRs and the address arithmetic over them.
//!
//! Addresses are handled as `u128` so that IPv4 and IPv6 share one exact
//! code path; nothing here ever walks a whole address space.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::error::{Error, Result};

/// The node's pod CIDRs (`Node.spec.podCIDRs`): IPv4 and/or IPv6, possibly
/// several per family, kept in the order given because allocation fills
/// them in that order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    cidrs: Vec<IpNet>,
    ranges: Vec<Range>,
}

/// The usable addresses of one CIDR, inclusive at both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) cidr: IpNet,
    first: u128,
    last: u128,
}

impl Pool {
    /// Validates `cidrs` and builds the pool.
    ///
    /// Rejected: an empty list, host bits set (`10.244.1.5/24`), CIDRs with
    /// no usable address (IPv4 /31 and /32, IPv6 /127 and /128 — see
    /// [`Pool::is_usable`]) and overlapping CIDRs, any of which would make
    /// two nodes or two pods share an address.
    pub fn new(cidrs: Vec<IpNet>) -> Result<Pool> {
        if cidrs.is_empty() {
            return Err(Error::InvalidPool("no CIDR given".into()));
        }
        let mut ranges = Vec::with_capacity(cidrs.len());
        for &cidr in &cidrs {
            if cidr.trunc() != cidr {
                return Err(Error::InvalidPool(format!(
                    "{cidr} has host bits set; did you mean {}?",
                    cidr.trunc()
                )));
            }
            let range = Range::of(cidr).ok_or_else(|| {
                Error::InvalidPool(format!(
                    "{cidr} has no usable address: the network address and the node's \
                     address (network + 1) are reserved{}; use at least a /{}",
                    if cidr.addr().is_ipv4() {
                        ", and so is the broadcast address"
                    } else {
                        ""
                    },
                    if cidr.addr().is_ipv4() { 30 } else { 126 }
                ))
            })?;
            ranges.push(range);
        }
        for (i, a) in cidrs.iter().enumerate() {
            for b in &cidrs[i + 1..] {
                // Two CIDRs overlap exactly when one contains the other.
                if a.contains(b) || b.contains(a) {
                    return Err(Error::InvalidPool(format!("{a} and {b} overlap")));
                }
            }
        }
        Ok(Pool { cidrs, ranges })
    }

    /// The CIDRs, in the order given to [`Pool::new`].
    pub fn cidrs(&self) -> &[IpNet] {
        &self.cidrs
    }

    /// True when `ip` lies inside one of the CIDRs, reserved addresses
    /// (network, node, broadcast) included. See [`Pool::is_usable`] for
    /// "could have been handed to a pod".
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|cidr| cidr.contains(&ip))
    }

    /// True when `ip` is an address this pool hands to pods: inside a CIDR
    /// and neither its network address, its first host address (network +
    /// 1, kept for the node's own tunnel device) nor, for IPv4, its
    /// broadcast address.
    pub fn is_usable(&self, ip: IpAddr) -> bool {
        self.range_of(ip).is_some()
    }

    /// The number of usable addresses of one family (`family_v4`: IPv4,
    /// else IPv6), 0 when the pool has none of it. Exact: CIDRs do not
    /// overlap, so the sum stays below 2^128.
    pub fn capacity(&self, family_v4: bool) -> u128 {
        self.ranges
            .iter()
            .filter(|r| r.is_v4() == family_v4)
            .map(Range::len)
            .sum()
    }

    /// True when the pool has at least one IPv4 CIDR.
    pub fn has_v4(&self) -> bool {
        self.ranges.iter().any(Range::is_v4)
    }

    /// True when the pool has at least one IPv6 CIDR.
    pub fn has_v6(&self) -> bool {
        self.ranges.iter().any(|r| !r.is_v4())
    }

    /// The families present, IPv4 first: the order of allocated addresses.
    pub(crate) fn families(&self) -> impl Iterator<Item = bool> + '_ {
        [true, false]
            .into_iter()
            .filter(|&v4| if v4 { self.has_v4() } else { self.has_v6() })
    }

    /// The ranges of one family, in pool order.
    pub(crate) fn ranges(&self, family_v4: bool) -> impl Iterator<Item = &Range> + '_ {
        self.ranges.iter().filter(move |r| r.is_v4() == family_v4)
    }

    /// All ranges, in pool order.
    pub(crate) fn all_ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// The range whose usable addresses include `ip`.
    pub(crate) fn range_of(&self, ip: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(ip))
    }
}

impl Range {
    /// The usable addresses of `cidr` (which has no host bits): from
    /// network + 2 to the last address, less the broadcast for IPv4.
    /// `None` when that is empty.
    pub(crate) fn of(cidr: IpNet) -> Option<Range> {
        let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
        // Fewer than two host bits leaves nothing once the network address
        // and the node's address are taken; checked first so the
        // arithmetic below cannot overflow at the top of the space.
        if host_bits < 2 {
            return None;
        }
        let network = to_u128(cidr.network());
        let span = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let top = network + span;
        let last = if cidr.addr().is_ipv4() { top - 1 } else { top };
        let first = network + 2;
        (first <= last).then_some(Range { cidr, first, last })
    }

    fn is_v4(&self) -> bool {
        self.cidr.addr().is_ipv4()
    }

    /// The number of usable addresses (never 0).
    pub(crate) fn len(&self) -> u128 {
        // Cannot overflow: `first` is at least 2.
        self.last - self.first + 1
    }

    /// True when `ip` is one of the usable addresses.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_v4() && (self.first..=self.last).contains(&to_u128(ip))
    }

    /// The first address that is not in `reserved`, stepping round-robin
    /// from the one after `last_given` and wrapping around; `None` when
    /// every usable address is reserved.
    ///
    /// Bounded: among `n + 1` distinct candidates at most `n` can be
    /// reserved, so `min(len, n + 1)` steps decide it, where `n` counts the
    /// reserved addresses inside this range. That keeps a /64 as cheap as a
    /// /24.
    pub(crate) fn next_free(
        &self,
        last_given: Option<IpAddr>,
        reserved: &HashSet<IpAddr>,
    ) -> Option<IpAddr> {
        let taken = reserved.iter().filter(|&&ip| self.contains(ip)).count();
        let steps = self.len().min(taken as u128 + 1);
        let mut candidate = match last_given {
            Some(ip) if self.contains(ip) => self.after(to_u128(ip)),
            _ => self.first,
        };
        for _ in 0..steps {
            let ip = from_u128(candidate, self.is_v4());
            if !reserved.contains(&ip) {
                return Some(ip);
            }
            candidate = self.after(candidate);
        }
        None
    }

    /// The usable address after `n`, wrapping from the last to the first.
    fn after(&self, n: u128) -> u128 {
        if n >= self.last { self.first } else { n + 1 }
    }
}

/// `ip` as an integer; IPv4 addresses occupy the low 32 bits.
pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The inverse of [`to_u128`]; `n` fits in 32 bits when `v4`.
fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        // Truncation is exact: IPv4 ranges never exceed u32::MAX.
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(cidrs: &[&str]) -> Result<Pool> {
        Pool::new(cidrs.iter().map(|c| net(c)).collect())
    }

    fn invalid(cidrs: &[&str]) -> String {
        match pool(cidrs) {
            Err(Error::InvalidPool(msg)) => msg,
            other => panic!("{cidrs:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn v4_skips_network_node_and_broadcast() {
        let p = pool(&["10.244.1.0/24"]).unwrap();
        assert!(!p.is_usable(ip("10.244.1.0")));
        assert!(!p.is_usable(ip("10.244.1.1")));
        assert!(p.is_usable(ip("10.244.1.2")));
        assert!(p.is_usable(ip("10.244.1.254")));
        assert!(!p.is_usable(ip("10.244.1.255")));
        assert!(p.contains(ip("10.244.1.255")));
        assert!(!p.contains(ip("10.244.2.2")));
        assert_eq!(p.capacity(true), 253);
        assert_eq!(p.capacity(false), 0);
    }

    #[test]
    fn v6_has_no_broadcast_to_skip() {
        let p = pool(&["fd00::/120"]).unwrap();
        assert!(!p.is_usable(ip("fd00::")));
        assert!(!p.is_usable(ip("fd00::1")));
        assert!(p.is_usable(ip("fd00::2")));
        assert!(p.is_usable(ip("fd00::ff")));
        assert_eq!(p.capacity(false), 254);
    }

    #[test]
    fn smallest_pools() {
        let p30 = pool(&["10.0.0.0/30"]).unwrap();
        assert_eq!(p30.capacity(true), 1);
        assert!(p30.is_usable(ip("10.0.0.2")));
        assert_eq!(pool(&["fd00::/126"]).unwrap().capacity(false), 2);
        for tiny in ["10.0.0.0/31", "10.0.0.1/32", "fd00::/127", "fd00::1/128"] {
            let msg = invalid(&[tiny]);
            assert!(msg.contains("no usable address"), "{msg}");
        }
    }

    #[test]
    fn exact_capacity_of_huge_pools() {
        let p = pool(&["10.0.0.0/16", "fd00:10:244:1::/64"]).unwrap();
        assert_eq!(p.capacity(true), 65_536 - 3);
        assert_eq!(p.capacity(false), (1u128 << 64) - 2);
        assert_eq!(pool(&["::/0"]).unwrap().capacity(false), u128::MAX - 1);
        assert_eq!(
            pool(&["0.0.0.0/0"]).unwrap().capacity(true),
            (1u128 << 32) - 3
        );
        // Disjoint CIDRs never add up past the space, less two per CIDR.
        let halves = pool(&["::/1", "8000::/1"]).unwrap();
        assert_eq!(halves.capacity(false), u128::MAX - 3);
    }

    #[test]
    fn host_bits_are_rejected_with_a_hint() {
        let msg = invalid(&["10.244.1.5/24"]);
        assert!(
            msg.contains("host bits") && msg.contains("10.244.1.0/24"),
            "{msg}"
        );
        invalid(&["fd00::1/64"]);
    }

    #[test]
    fn overlaps_and_empty_pools_are_rejected() {
        assert!(invalid(&["10.0.0.0/16", "10.0.1.0/24"]).contains("overlap"));
        assert!(invalid(&["fd00::/64", "fd00::/64"]).contains("overlap"));
        invalid(&[]);
        let p = pool(&["10.0.0.0/24", "10.0.1.0/24", "fd00::/64"]).unwrap();
        assert_eq!(p.families().collect::<Vec<_>>(), [true, false]);
        assert_eq!(pool(&["fd00::/64"]).unwrap().families().count(), 1);
    }

    #[test]
    fn next_free_is_round_robin_with_wrap_around() {
        let r = Range::of(net("10.0.0.0/29")).unwrap(); // .2 ..= .6
        let none = HashSet::new();
        assert_eq!(r.next_free(None, &none), Some(ip("10.0.0.2")));
        assert_eq!(
            r.next_free(Some(ip("10.0.0.3")), &none),
            Some(ip("10.0.0.4"))
        );
        assert_eq!(
            r.next_free(Some(ip("10.0.0.6")), &none),
            Some(ip("10.0.0.2"))
        );
        // A `last` outside the range (pool changed) restarts at the front.
        assert_eq!(
            r.next_free(Some(ip("10.9.0.3")), &none),
            Some(ip("10.0.0.2"))
        );
        let reserved: HashSet<_> = ["10.0.0.5", "10.0.0.6", "10.0.0.2"]
            .into_iter()
            .map(ip)
            .collect();
        assert_eq!(
            r.next_free(Some(ip("10.0.0.4")), &reserved),
            Some(ip("10.0.0.3"))
        );
    }

    #[test]
    fn next_free_reports_a_full_range() {
        let r = Range::of(net("10.0.0.0/30")).unwrap();
        let full: HashSet<_> = [ip("10.0.0.2")].into();
        assert_eq!(r.next_free(None, &full), None);
        // Reserved addresses elsewhere do not count against this range.
        let elsewhere: HashSet<_> = [ip("10.0.1.2"), ip("fd00::2")].into();
        assert_eq!(r.next_free(None, &elsewhere), Some(ip("10.0.0.2")));
    }

    #[test]
    fn next_free_in_a_v6_64_is_bounded_by_reservations() {
        let r = Range::of(net("fd00:10:244:1::/64")).unwrap();
        let reserved: HashSet<_> = (2..300u16)
            .map(|i| ip(&format!("fd00:10:244:1::{i:x}")))
            .collect();
        assert_eq!(r.next_free(None, &reserved), Some(ip("fd00:10:244:1::12c")));
        // Wrap-around at the very top of the /64: no broadcast to skip.
        let top = ip("fd00:10:244:1:ffff:ffff:ffff:fffe");
        assert_eq!(
            r.next_free(Some(top), &HashSet::new()),
            Some(ip("fd00:10:244:1:ffff:ffff:ffff:ffff"))
        );
        let last = ip("fd00:10:244:1:ffff:ffff:ffff:ffff");
        assert_eq!(
            r.next_free(Some(last), &HashSet::new()),
            Some(ip("fd00:10:244:1::2"))
        );
    }
}
