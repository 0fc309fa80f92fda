//! The store's content in memory and the decisions taken on it.
//!
//! Everything here is pure: the [`Store`](crate::Store) loads a [`State`]
//! under the lock, calls one of these methods, and writes the result back
//! only when it changed. So the allocator is tested without a disk.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::types::{Allocation, Attachment, Reservation};

/// All reservations of one network, and where round-robin resumes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// At most one per attachment; no address appears twice.
    pub(crate) reservations: Vec<Reservation>,
    /// The last address handed out per CIDR, so that a released address is
    /// not handed out again right away (a stale peer may still send to it).
    pub(crate) last: BTreeMap<IpNet, IpAddr>,
}

/// What a new reservation is stamped with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp<'a> {
    pub(crate) boot_id: Option<&'a str>,
    pub(crate) now: u64,
}

impl State {
    /// The reservation of `attachment`, if any.
    pub(crate) fn get(&self, attachment: &Attachment) -> Option<&Reservation> {
        self.reservations
            .iter()
            .find(|r| r.attachment == *attachment)
    }

    /// Reserves one address per family of `pool` for `attachment`.
    ///
    /// Returns the allocation and whether the state changed. A reservation
    /// that still fits the pool is returned as it is. One that no longer
    /// fits (the pool changed) is replaced: its addresses that are still
    /// usable are kept, one per family, and only the missing families get
    /// new ones — a pod keeps what it can. On error the state is unchanged,
    /// so an exhausted family never leaves the other family reserved.
    pub(crate) fn allocate(
        &mut self,
        attachment: &Attachment,
        pool: &Pool,
        stamp: Stamp<'_>,
    ) -> Result<(Allocation, bool)> {
        let old = self.get(attachment);
        if let Some(old) = old.filter(|r| fits(pool, &r.ips)) {
            let allocation = Allocation {
                ips: old.ips.clone(),
                created: false,
            };
            return Ok((allocation, false));
        }
        let old_ips: &[IpAddr] = old.map_or(&[], |r| &r.ips);
        // The attachment's own addresses are being replaced, so they do not
        // block anything.
        let reserved: HashSet<IpAddr> = self
            .reservations
            .iter()
            .filter(|r| r.attachment != *attachment)
            .flat_map(|r| r.ips.iter().copied())
            .collect();

        let mut ips = Vec::new();
        let mut handed_out = Vec::new();
        for v4 in pool.families() {
            let kept = old_ips
                .iter()
                .copied()
                .find(|&ip| ip.is_ipv4() == v4 && pool.is_usable(ip) && !reserved.contains(&ip));
            if let Some(ip) = kept {
                ips.push(ip);
                continue;
            }
            let fresh = pool.ranges(v4).find_map(|r| {
                Some((
                    r.cidr,
                    r.next_free(self.last.get(&r.cidr).copied(), &reserved)?,
                ))
            });
            let Some((cidr, ip)) = fresh else {
                return Err(Error::Exhausted {
                    cidrs: pool.ranges(v4).map(|r| r.cidr).collect(),
                });
            };
            ips.push(ip);
            handed_out.push((cidr, ip));
        }

        self.reservations.retain(|r| r.attachment != *attachment);
        self.reservations.push(Reservation {
            attachment: attachment.clone(),
            ips: ips.clone(),
            boot_id: stamp.boot_id.map(str::to_owned),
            created: stamp.now,
        });
        // Round-robin state for CIDRs that left the pool is dead weight.
        self.last.retain(|cidr, _| pool.cidrs().contains(cidr));
        self.last.extend(handed_out);
        Ok((Allocation { ips, created: true }, true))
    }

    /// Removes the reservation of `attachment` and returns it. `last` stays
    /// as it is, so the freed addresses go to the back of the queue.
    pub(crate) fn release(&mut self, attachment: &Attachment) -> Option<Reservation> {
        let i = self
            .reservations
            .iter()
            .position(|r| r.attachment == *attachment)?;
        Some(self.reservations.remove(i))
    }

    /// Removes every reservation for which `keep` is false and returns them
    /// in store order.
    pub(crate) fn retain(
        &mut self,
        mut keep: impl FnMut(&Reservation) -> bool,
    ) -> Vec<Reservation> {
        let (kept, released) = std::mem::take(&mut self.reservations)
            .into_iter()
            .partition(|r| keep(r));
        self.reservations = kept;
        released
    }

    /// Free usable addresses per CIDR of `pool`, in pool order.
    pub(crate) fn free(&self, pool: &Pool) -> Vec<(IpNet, u128)> {
        let reserved: HashSet<IpAddr> = self
            .reservations
            .iter()
            .flat_map(|r| r.ips.iter().copied())
            .collect();
        pool.all_ranges()
            .iter()
            .map(|range| {
                let used = reserved.iter().filter(|&&ip| range.contains(ip)).count();
                (range.cidr, range.len().saturating_sub(used as u128))
            })
            .collect()
    }
}

/// True when `ips` is exactly one usable address per family of `pool`, in
/// allocation order: then a repeated ADD returns it unchanged.
fn fits(pool: &Pool, ips: &[IpAddr]) -> bool {
    let families: Vec<bool> = pool.families().collect();
    ips.len() == families.len()
        && ips
            .iter()
            .zip(families)
            .all(|(&ip, v4)| ip.is_ipv4() == v4 && pool.is_usable(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp<'static> = Stamp {
        boot_id: Some("boot"),
        now: 1_700_000_000,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(cidrs: &[&str]) -> Pool {
        Pool::new(cidrs.iter().map(|c| c.parse().unwrap()).collect()).unwrap()
    }

    fn att(id: &str) -> Attachment {
        Attachment::new(id, "eth0")
    }

    fn alloc(state: &mut State, id: &str, pool: &Pool) -> Vec<IpAddr> {
        state.allocate(&att(id), pool, STAMP).unwrap().0.ips
    }

    #[test]
    fn dual_stack_gives_v4_then_v6() {
        let p = pool(&["fd00::/64", "10.244.1.0/24"]);
        let mut s = State::default();
        let (a, changed) = s.allocate(&att("a"), &p, STAMP).unwrap();
        assert!(changed && a.created);
        assert_eq!(a.ips, [ip("10.244.1.2"), ip("fd00::2")]);
        let r = s.get(&att("a")).unwrap();
        assert_eq!(r.boot_id.as_deref(), Some("boot"));
        assert_eq!(r.created, STAMP.now);
    }

    #[test]
    fn repeated_allocate_is_idempotent() {
        let p = pool(&["10.244.1.0/24", "fd00::/64"]);
        let mut s = State::default();
        let first = s.allocate(&att("a"), &p, STAMP).unwrap().0;
        let before = s.clone();
        let (again, changed) = s.allocate(&att("a"), &p, STAMP).unwrap();
        assert!(!changed && !again.created);
        assert_eq!(again.ips, first.ips);
        assert_eq!(s, before);
        // Another interface of the same container is another attachment.
        let eth1 = Attachment::new("a", "eth1");
        assert_ne!(s.allocate(&eth1, &p, STAMP).unwrap().0.ips, first.ips);
    }

    #[test]
    fn round_robin_does_not_reuse_a_released_address_at_once() {
        let p = pool(&["10.0.0.0/29"]); // .2 ..= .6
        let mut s = State::default();
        assert_eq!(alloc(&mut s, "a", &p), [ip("10.0.0.2")]);
        assert_eq!(alloc(&mut s, "b", &p), [ip("10.0.0.3")]);
        s.release(&att("a")).unwrap();
        assert_eq!(alloc(&mut s, "c", &p), [ip("10.0.0.4")]);
        assert_eq!(alloc(&mut s, "d", &p), [ip("10.0.0.5")]);
        assert_eq!(alloc(&mut s, "e", &p), [ip("10.0.0.6")]);
        // Wraps around to the address released earlier, skipping .3 (b).
        assert_eq!(alloc(&mut s, "f", &p), [ip("10.0.0.2")]);
        match s.allocate(&att("g"), &p, STAMP) {
            Err(Error::Exhausted { cidrs }) => assert_eq!(cidrs, p.cidrs()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn later_cidrs_of_a_family_are_used_when_the_first_is_full() {
        let p = pool(&["10.0.0.0/30", "10.0.1.0/30", "fd00::/126"]);
        let mut s = State::default();
        assert_eq!(alloc(&mut s, "a", &p), [ip("10.0.0.2"), ip("fd00::2")]);
        assert_eq!(alloc(&mut s, "b", &p), [ip("10.0.1.2"), ip("fd00::3")]);
        assert_eq!(s.last.len(), 3);
    }

    #[test]
    fn exhausting_one_family_reserves_nothing() {
        let p = pool(&["10.0.0.0/30", "fd00::/64"]);
        let mut s = State::default();
        alloc(&mut s, "a", &p);
        let before = s.clone();
        match s.allocate(&att("b"), &p, STAMP) {
            Err(Error::Exhausted { cidrs }) => {
                assert_eq!(cidrs, ["10.0.0.0/30".parse::<IpNet>().unwrap()])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s, before, "no v6 address may be left reserved");
    }

    #[test]
    fn pool_change_replaces_the_reservation_keeping_what_still_fits() {
        let v4_only = pool(&["10.0.0.0/24"]);
        let mut s = State::default();
        assert_eq!(alloc(&mut s, "a", &v4_only), [ip("10.0.0.2")]);

        // A v6 CIDR was added: the v4 address stays, a v6 one is added.
        let dual = pool(&["10.0.0.0/24", "fd00::/64"]);
        let (a, changed) = s.allocate(&att("a"), &dual, STAMP).unwrap();
        assert!(changed && a.created);
        assert_eq!(a.ips, [ip("10.0.0.2"), ip("fd00::2")]);

        // The v4 CIDR changed: a new v4 address, the v6 one stays.
        let moved = pool(&["10.1.0.0/24", "fd00::/64"]);
        assert_eq!(alloc(&mut s, "a", &moved), [ip("10.1.0.2"), ip("fd00::2")]);
        assert_eq!(s.reservations.len(), 1);
        assert!(!s.last.contains_key(&"10.0.0.0/24".parse().unwrap()));

        // An address that is now the node's own (network + 1) is replaced.
        s.reservations[0].ips[0] = ip("10.1.1.1");
        let node_addr = pool(&["10.1.1.0/24", "fd00::/64"]);
        assert_eq!(
            alloc(&mut s, "a", &node_addr),
            [ip("10.1.1.2"), ip("fd00::2")]
        );

        // A v4-only pool drops the v6 address.
        let v4_again = pool(&["10.1.1.0/24"]);
        assert_eq!(alloc(&mut s, "a", &v4_again), [ip("10.1.1.2")]);
    }

    #[test]
    fn release_and_retain() {
        let p = pool(&["10.0.0.0/24"]);
        let mut s = State::default();
        for id in ["a", "b", "c"] {
            alloc(&mut s, id, &p);
        }
        assert_eq!(s.release(&att("b")).unwrap().ips, [ip("10.0.0.3")]);
        assert_eq!(s.release(&att("b")), None);
        let gone = s.retain(|r| r.attachment.container_id == "c");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].attachment, att("a"));
        assert_eq!(s.reservations.len(), 1);
    }

    #[test]
    fn free_counts_reservations_per_cidr() {
        let p = pool(&["10.0.0.0/29", "10.0.1.0/30", "fd00::/64"]);
        let mut s = State::default();
        alloc(&mut s, "a", &p);
        alloc(&mut s, "b", &p);
        // A reservation outside the pool is not counted.
        s.reservations[1].ips[0] = ip("192.168.0.9");
        assert_eq!(
            s.free(&p),
            [
                ("10.0.0.0/29".parse().unwrap(), 4),
                ("10.0.1.0/30".parse().unwrap(), 1),
                ("fd00::/64".parse().unwrap(), (1u128 << 64) - 4),
            ]
        );
    }
}
