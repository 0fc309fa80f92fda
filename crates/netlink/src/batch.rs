//! Request batching: several ACK-only requests in one datagram, their ACKs
//! read back together, so N changes cost one round trip instead of N.

use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::fdb::FdbEntry;
use crate::neigh::Neighbour;
use crate::route::Route;
use crate::socket::{Handle, Request};

/// Most bytes of requests sent in one datagram. The kernel accepts up to the
/// socket's send buffer (about 200 KiB by default); staying far below it
/// keeps a batch working under a small `wmem_default`.
const MAX_DATAGRAM: usize = 32 * 1024;

/// Most requests sent in one datagram. The kernel handles a datagram inside
/// `send` and queues one ACK per request (about 1 KiB of receive buffer
/// each, more with an extended-ack reason) before we read any: more than
/// the receive buffer holds would be dropped (ENOBUFS). 32 ACKs stay well
/// inside the default 208 KiB.
const MAX_ACKS: usize = 32;

/// A list of ACK-only requests sent in one datagram, processed by the
/// kernel in order (see [`Handle::apply`]).
///
/// Each request is encoded when it is added, with the same message, flags
/// and operation name as the [`Handle`] method of the same name; sequence
/// numbers are given when the batch is sent, so a batch can be sent more
/// than once. A batch longer than 32 requests or 32 KiB goes out in several
/// datagrams, one after the other, in order.
///
/// Order matters: put [`Batch::set_up`] before IPv4 routes through that link
/// (the kernel refuses a route via a link that is down), and addresses
/// before routes whose gateway they cover.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The encoded requests back to back, each padded to 4 bytes, sequence
    /// numbers 0.
    buf: Vec<u8>,
    entries: Vec<Entry>,
}

/// Where one request lies in [`Batch::buf`], and what it does.
#[derive(Clone, Debug)]
struct Entry {
    bytes: Range<usize>,
    op: String,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// [`Handle::add_address`]: `addr` on link `index`, EEXIST when it is
    /// there.
    pub fn add_address(&mut self, index: u32, addr: IpNet, nodad: bool) -> &mut Self {
        self.push(crate::addr::add_address(index, addr, nodad))
    }

    /// [`Handle::add_route`]: NLM_F_CREATE|NLM_F_EXCL.
    pub fn add_route(&mut self, route: &Route) -> &mut Self {
        self.push(crate::route::new_route(route, false))
    }

    /// [`Handle::replace_route`]: NLM_F_CREATE|NLM_F_REPLACE.
    pub fn replace_route(&mut self, route: &Route) -> &mut Self {
        self.push(crate::route::new_route(route, true))
    }

    /// [`Handle::add_neighbour`]: create or replace.
    pub fn add_neighbour(&mut self, n: &Neighbour) -> &mut Self {
        self.push(crate::neigh::add_neighbour(n))
    }

    /// [`Handle::delete_route`]: ESRCH (is_not_found) when there is none.
    pub fn delete_route(&mut self, route: &Route) -> &mut Self {
        self.push(crate::route::delete_route(route))
    }

    /// [`Handle::delete_neighbour`]: ENOENT (is_not_found) when there is
    /// none.
    pub fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> &mut Self {
        self.push(crate::neigh::delete_neighbour(index, ip))
    }

    /// [`Handle::add_fdb`]: create, or replace the destination for that MAC.
    pub fn add_fdb(&mut self, entry: &FdbEntry) -> &mut Self {
        self.push(crate::fdb::add_fdb(entry))
    }

    /// [`Handle::delete_fdb`]: ENOENT (is_not_found) when there is none.
    pub fn delete_fdb(&mut self, entry: &FdbEntry) -> &mut Self {
        self.push(crate::fdb::delete_fdb(entry))
    }

    /// [`Handle::set_up`].
    pub fn set_up(&mut self, index: u32) -> &mut Self {
        self.push(crate::link::set_up(index))
    }

    /// No IPv6 link-local address when `index` comes up (address generation
    /// mode none); the link must still be down.
    pub fn set_no_link_local(&mut self, index: u32) -> &mut Self {
        self.push(crate::link::set_no_link_local(index))
    }

    /// [`Handle::set_alias`]; an empty alias removes it.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> &mut Self {
        self.push(crate::link::set_alias(index, alias))
    }

    /// How many requests the batch holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no request.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push(&mut self, req: Request) -> &mut Self {
        let start = self.buf.len();
        let op = req.append_to(&mut self.buf);
        let bytes = start..self.buf.len();
        self.entries.push(Entry { bytes, op });
        self
    }

    /// Splits the requests into runs of consecutive ones that each fit in a
    /// datagram: at most `max_msgs` requests and `max_bytes` bytes, except
    /// that a single request larger than that still goes out alone.
    fn chunks(&self, max_bytes: usize, max_msgs: usize) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, e) in self.entries.iter().enumerate() {
            let bytes = e.bytes.end - self.entries[start].bytes.start;
            if i > start && (i - start == max_msgs || bytes > max_bytes) {
                out.push(start..i);
                start = i;
            }
        }
        if start < self.entries.len() {
            out.push(start..self.entries.len());
        }
        out
    }

    /// Writes the requests `range` to `out` as one datagram, numbered
    /// `first`, `first + 1`, …
    fn encode(&self, range: Range<usize>, first: u32, out: &mut Vec<u8>) {
        let entries = &self.entries[range];
        let (Some(head), Some(tail)) = (entries.first(), entries.last()) else {
            return;
        };
        let base = out.len();
        out.extend_from_slice(&self.buf[head.bytes.start..tail.bytes.end]);
        for (k, e) in (0u32..).zip(entries) {
            // Sequence numbers wrap, like the handle's own.
            let seq = first.wrapping_add(k);
            // nlmsghdr: length u32, type u16, flags u16, then the sequence.
            let at = base + (e.bytes.start - head.bytes.start) + 8;
            out[at..at + 4].copy_from_slice(&seq.to_ne_bytes());
        }
    }
}

impl Handle {
    /// Sends every request of `batch` in one datagram (several for a batch
    /// over 32 requests or 32 KiB) and reads all ACKs. Returns `Ok` when all
    /// succeeded; otherwise the error of the FIRST failing request, named
    /// as the single method would name it (e.g. `add route 0.0.0.0/0 via
    /// 169.254.1.1 dev 2 onlink: …`), after having read all remaining
    /// replies so the handle stays usable.
    ///
    /// Netlink has no transactions: the requests after a failing one are
    /// still executed by the kernel, and what succeeded is not undone. Use
    /// [`Handle::apply_each`] to know which ones took effect.
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        self.apply_each(batch).into_iter().collect()
    }

    /// Like [`Handle::apply`], but returns each request's outcome, in the
    /// batch's order. A request whose datagram could not be sent (nor any
    /// after it) gets `"<op>: send"` errors; it was not executed.
    pub fn apply_each(&mut self, batch: &Batch) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(batch.len());
        for range in batch.chunks(MAX_DATAGRAM, MAX_ACKS) {
            let ops: Vec<&str> = batch.entries[range.clone()]
                .iter()
                .map(|e| e.op.as_str())
                .collect();
            // At most MAX_ACKS, so the count fits.
            let first = self.reserve_seqs(ops.len() as u32);
            let sent = self.send_with(&|| ops[0].to_string(), |buf| {
                batch.encode(range.clone(), first, buf)
            });
            match sent {
                Ok(()) => results.extend(self.read_acks(first, &ops)),
                Err(e) => {
                    let msg = e.to_string();
                    results.push(Err(e));
                    let unsent = &batch.entries[range.start + 1..];
                    results.extend(
                        unsent
                            .iter()
                            .map(|u| Err(Error::Protocol(format!("{}: not sent: {msg}", u.op)))),
                    );
                    break;
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer};

    fn sample() -> Batch {
        let mut b = Batch::new();
        b.set_alias(3, "pod/a") // 5 bytes: padded
            .add_address(3, "10.0.0.5/32".parse().unwrap(), true)
            .set_up(3)
            .add_route(&Route::device("10.0.0.0/24".parse().unwrap(), 3));
        b
    }

    /// (length, type, flags, seq) of every message in `buf`, checking that
    /// each starts 4-aligned right after the previous one.
    fn headers(buf: &[u8]) -> Vec<(usize, u16, u16, u32)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            assert_eq!(at % 4, 0);
            let h = NetlinkBuffer::new_checked(&buf[at..]).unwrap();
            let len = h.length() as usize;
            out.push((len, h.message_type(), h.flags(), h.sequence_number()));
            at += (len + 3) & !3;
        }
        assert_eq!(at, buf.len(), "no trailing bytes");
        out
    }

    #[test]
    fn encodes_back_to_back_with_consecutive_seqs() {
        let b = sample();
        assert_eq!(b.len(), 4);
        assert!(!b.is_empty() && Batch::new().is_empty());
        let mut out = vec![0xaa; 4]; // appended after what is there
        b.encode(0..4, 41, &mut out);
        assert_eq!(out[..4], [0xaa; 4]);
        let hs = headers(&out[4..]);
        assert_eq!(
            hs.iter().map(|h| h.3).collect::<Vec<_>>(),
            vec![41, 42, 43, 44]
        );
        // RTM_SETLINK, RTM_NEWADDR, RTM_SETLINK, RTM_NEWROUTE
        assert_eq!(
            hs.iter().map(|h| h.1).collect::<Vec<_>>(),
            vec![19, 20, 19, 24]
        );
        for h in &hs {
            assert_eq!(h.2 & (NLM_F_REQUEST | NLM_F_ACK), NLM_F_REQUEST | NLM_F_ACK);
        }
        assert_eq!(
            hs[1].2,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        );
        // The alias message (16 + 16 + 4 + "pod/a\0"): the attribute's
        // padding counts in its length.
        assert_eq!(hs[0].0, 16 + 16 + 4 + 8);
        assert_eq!(b.entries[1].bytes.start, 44);
        // The stored copy keeps sequence 0: a batch can be sent again.
        assert!(headers(&b.buf).iter().all(|h| h.3 == 0));
    }

    #[test]
    fn same_bytes_and_names_as_the_single_calls() {
        let route = Route::device("10.0.0.0/24".parse().unwrap(), 3);
        let mut single = Vec::new();
        let op = crate::route::new_route(&route, false).append_to(&mut single);
        let mut b = Batch::new();
        b.add_route(&route);
        assert_eq!(b.buf, single);
        assert_eq!(b.entries[0].op, op);
        assert_eq!(op, "add route 10.0.0.0/24 dev 3");
        b.replace_route(&route);
        assert_eq!(b.entries[1].op, "replace route 10.0.0.0/24 dev 3");
    }

    #[test]
    fn overlay_requests_are_named_and_typed_like_the_single_calls() {
        let fdb = FdbEntry {
            index: 4,
            mac: [2, 0, 0, 0, 0, 9],
            dst: "192.168.77.2".parse().unwrap(),
        };
        let route = Route::device("10.244.2.0/24".parse().unwrap(), 4);
        let mut b = Batch::new();
        b.add_fdb(&fdb)
            .delete_fdb(&fdb)
            .delete_route(&route)
            .delete_neighbour(4, "10.244.2.0".parse().unwrap());
        let ops: Vec<&str> = b.entries.iter().map(|e| e.op.as_str()).collect();
        assert_eq!(
            ops,
            [
                "add fdb 02:00:00:00:00:09 dst 192.168.77.2 dev 4",
                "delete fdb 02:00:00:00:00:09 dst 192.168.77.2 dev 4",
                "delete route 10.244.2.0/24 dev 4",
                "delete neighbour 10.244.2.0 dev 4",
            ]
        );
        // RTM_NEWNEIGH, RTM_DELNEIGH, RTM_DELROUTE, RTM_DELNEIGH
        let hs = headers(&b.buf);
        assert_eq!(
            hs.iter().map(|h| h.1).collect::<Vec<_>>(),
            vec![28, 29, 25, 29]
        );
        let mut single = Vec::new();
        crate::fdb::add_fdb(&fdb).append_to(&mut single);
        assert_eq!(b.buf[b.entries[0].bytes.clone()], single);
    }

    #[test]
    fn a_subrange_is_numbered_from_first() {
        let b = sample();
        let mut out = Vec::new();
        b.encode(2..4, u32::MAX, &mut out);
        let hs = headers(&out);
        assert_eq!(
            hs.iter().map(|h| h.3).collect::<Vec<_>>(),
            vec![u32::MAX, 0]
        );
        // Only the sequence numbers differ from the stored requests.
        let mut zeroed = out.clone();
        for at in [8, hs[0].0 + 8] {
            zeroed[at..at + 4].fill(0);
        }
        assert_eq!(zeroed, b.buf[b.entries[2].bytes.start..]);
        b.encode(0..0, 1, &mut out);
        assert_eq!(out.len(), b.buf.len() - b.entries[2].bytes.start);
    }

    #[test]
    fn chunks_by_count_and_bytes() {
        let mut b = Batch::new();
        for i in 0..70 {
            b.set_up(i);
        }
        assert_eq!(
            b.chunks(MAX_DATAGRAM, MAX_ACKS),
            vec![0..32, 32..64, 64..70]
        );
        // set_up is 32 bytes: 100 bytes hold 3.
        assert_eq!(b.entries[0].bytes.len(), 32);
        assert_eq!(b.chunks(100, 10)[..2], [0..3, 3..6]);
        assert_eq!(Batch::new().chunks(100, 10), Vec::<Range<usize>>::new());
        // A request bigger than the limit still goes, alone.
        let mut big = Batch::new();
        big.set_up(1).set_alias(1, &"x".repeat(200)).set_up(1);
        assert_eq!(big.chunks(100, 10), vec![0..1, 1..2, 2..3]);
        // The real limit is far above a plugin's batch.
        let chunks = b.chunks(MAX_DATAGRAM, usize::MAX);
        assert_eq!(chunks, vec![0..70]);
    }
}
