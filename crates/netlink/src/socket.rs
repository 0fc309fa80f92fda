//! The NETLINK_ROUTE socket behind [`Handle`]: one request at a time (or one
//! [`crate::Batch`] datagram at a time), matched to its replies by sequence
//! number.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};
use crate::ns::Netns;

/// Initial receive buffer. Dump datagrams are capped by the kernel at about
/// 32 KiB and our replies carry no per-VF data, so this is rarely outgrown;
/// when it is, it grows to fit and the request is retried.
const RECV_BUF: usize = 64 * 1024;

/// How often a dump is repeated when the kernel flags it as interrupted
/// (NLM_F_DUMP_INTR: the table changed while it was being read) or a reply
/// was truncated.
const MAX_ATTEMPTS: usize = 4;

/// `NLM_F_CAPPED` in an NLMSG_ERROR: only the request's header is echoed.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` in an NLMSG_ERROR: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the kernel's human-readable reason.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// A NETLINK_ROUTE socket bound to one network namespace (the one it was
/// opened in), used synchronously: each call sends one request and reads
/// until its ACK (or the end of its dump); [`Handle::apply`] sends a
/// [`crate::Batch`] of them at once and reads all their ACKs.
///
/// Not thread-safe by design (`&mut self`); the plugin uses one handle per
/// namespace. After an error the handle stays usable.
#[derive(Debug)]
pub struct Handle {
    socket: Socket,
    seq: u32,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

/// What a request expects back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reply {
    /// Only an ACK (NLMSG_ERROR with code 0).
    Ack,
    /// Exactly one message (a non-dump GET), or an NLMSG_ERROR.
    One,
    /// Any number of messages up to NLMSG_DONE.
    Dump,
}

/// Result of reading one request's replies once.
enum Attempt {
    Done,
    /// The reply was truncated or the dump interrupted: send it again.
    Retry,
}

/// An ACK-only request, built once for both the single call
/// ([`Handle::request`]) and a [`crate::Batch`]: the message, its flags
/// besides NLM_F_REQUEST|NLM_F_ACK, and the operation's name for errors.
#[derive(Debug)]
pub(crate) struct Request {
    msg: RouteNetlinkMessage,
    flags: u16,
    op: String,
}

impl Request {
    pub(crate) fn new(msg: RouteNetlinkMessage, flags: u16, op: String) -> Request {
        Request { msg, flags, op }
    }

    /// Appends the request to `buf` as a complete netlink message padded to
    /// 4 bytes, with sequence number 0 (set when it is sent); returns its
    /// operation's name.
    pub(crate) fn append_to(self, buf: &mut Vec<u8>) -> String {
        let flags = NLM_F_REQUEST | NLM_F_ACK | self.flags;
        append(
            &mut NetlinkMessage::new(header(flags), self.msg.into()),
            buf,
        );
        self.op
    }
}

impl Handle {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn new() -> Result<Handle> {
        let op = "open netlink socket";
        let socket = Socket::new(NETLINK_ROUTE).map_err(|e| Error::io(op, e))?;
        // Replies come only from the kernel (port 0): connecting makes the
        // kernel refuse unicasts from other processes to our port.
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::io(op, e))?;
        // Extended ACKs carry the kernel's reason for EINVAL and friends.
        // Capped ACKs do not echo our request back. Strict checking makes the
        // kernel filter dumps by ifindex/table instead of sending everything.
        // All three are optional: old kernels simply give less.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_netlink_get_strict_chk(true);
        Ok(Handle {
            socket,
            seq: 0,
            send_buf: Vec::with_capacity(1024),
            recv_buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Opens a socket inside `ns`: enters it on this thread, opens, and goes
    /// back. The socket stays bound to `ns` for its whole life.
    pub fn in_netns(ns: &Netns) -> Result<Handle> {
        crate::ns::in_netns(ns, Handle::new)
    }

    /// Replaces the receive buffer with one of `bytes` capacity, so tests can
    /// force truncated replies and exercise the grow-and-retry path.
    #[doc(hidden)]
    pub fn set_recv_capacity_for_tests(&mut self, bytes: usize) {
        self.recv_buf = Vec::with_capacity(bytes);
    }

    /// Sends a request that changes something and waits for its ACK.
    pub(crate) fn ack(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: impl Fn() -> String,
    ) -> Result<()> {
        self.transact(msg, flags | NLM_F_ACK, Reply::Ack, &op, |_| {})
    }

    /// Like [`Handle::ack`], but keeps the messages the kernel sends back
    /// before the ACK under the request's sequence number (with
    /// `NLM_F_ECHO`, the object as created).
    pub(crate) fn ack_collect(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: impl Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        self.transact(msg, flags | NLM_F_ACK, Reply::Ack, &op, |m| out.push(m))?;
        Ok(out)
    }

    /// Sends one [`Request`] and waits for its ACK.
    pub(crate) fn request(&mut self, req: Request) -> Result<()> {
        let Request { msg, flags, op } = req;
        self.ack(msg, flags, || op.clone())
    }

    /// Takes `n` consecutive sequence numbers; returns the first.
    pub(crate) fn reserve_seqs(&mut self, n: u32) -> u32 {
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(n);
        first
    }

    /// Sends one datagram, which `fill` writes into the (emptied) send
    /// buffer.
    pub(crate) fn send_with(
        &mut self,
        op: &dyn Fn() -> String,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        self.send_buf.clear();
        fill(&mut self.send_buf);
        self.socket
            .send(&self.send_buf, 0)
            .map(drop)
            .map_err(|e| Error::io(format!("{}: send", op()), e))
    }

    /// Reads the ACKs of the requests sent with sequence numbers `first`,
    /// `first + 1`, … (one per entry of `ops`, which name them), in any
    /// order, until every one has its outcome. Replies to other sequence
    /// numbers are left-overs and skipped. When the socket fails (or a reply
    /// is broken) before all have come, the missing ones get that error;
    /// their late ACKs are skipped by later requests like any left-over.
    pub(crate) fn read_acks(&mut self, first: u32, ops: &[&str]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = ops.iter().map(|_| None).collect();
        let mut pending = ops.len();
        while pending > 0 {
            // A failure that is no request's own goes to the first one
            // still waiting; the others are told they got no ACK.
            let next = results.iter().position(Option::is_none).unwrap_or(0);
            let mut broken = match self.recv(false, &|| ops[next].to_string()) {
                Ok(None) => continue,
                Ok(Some(false)) => None,
                Ok(Some(true)) => Some(Error::Protocol(format!("{}: truncated ACK", ops[next]))),
                Err(e) => Some(e),
            };
            for raw in messages(&self.recv_buf) {
                let raw = match raw {
                    Ok(raw) => raw,
                    Err(e) => {
                        let e = format!("{}: bad netlink header: {e}", ops[next]);
                        broken = Some(Error::Protocol(e));
                        break;
                    }
                };
                let i = raw.seq.wrapping_sub(first) as usize;
                if i >= ops.len() || results[i].is_some() {
                    continue;
                }
                if raw.kind != NLMSG_ERROR && raw.kind != NLMSG_DONE {
                    // An ACK-only request has nothing else to say.
                    continue;
                }
                let op = || ops[i].to_string();
                results[i] = Some(decode(&raw, &op, &mut Vec::new()).map_or(Ok(()), Err));
                pending -= 1;
            }
            if let Some(e) = broken {
                let msg = e.to_string();
                let mut e = Some(e);
                for (slot, op) in results.iter_mut().zip(ops).filter(|(r, _)| r.is_none()) {
                    let other = || Error::Protocol(format!("{op}: no ACK: {msg}"));
                    *slot = Some(Err(e.take().unwrap_or_else(other)));
                }
                break;
            }
        }
        results.into_iter().flatten().collect()
    }

    /// Sends a non-dump GET and returns its one reply.
    pub(crate) fn get(
        &mut self,
        msg: RouteNetlinkMessage,
        op: impl Fn() -> String,
    ) -> Result<RouteNetlinkMessage> {
        let mut out = None;
        self.transact(msg, 0, Reply::One, &op, |m| out = Some(m))?;
        out.ok_or_else(|| Error::Protocol(format!("{}: no reply", op())))
    }

    /// Sends a dump request and maps every reply through `f`, keeping the
    /// `Some`s. An interrupted dump is read again from the start.
    pub(crate) fn dump<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        op: impl Fn() -> String,
        mut f: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.transact(msg, NLM_F_DUMP, Reply::Dump, &op, |m| {
            if let Some(t) = f(m) {
                out.push(t);
            }
        })
        .map(|()| out)
    }

    fn transact(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        reply: Reply,
        op: &dyn Fn() -> String,
        mut sink: impl FnMut(RouteNetlinkMessage),
    ) -> Result<()> {
        let mut msg = NetlinkMessage::new(header(NLM_F_REQUEST | flags), msg.into());
        for _ in 0..MAX_ATTEMPTS {
            msg.header.sequence_number = self.reserve_seqs(1);
            self.send_with(op, |buf| append(&mut msg, buf))?;

            // Only a complete, uninterrupted reply reaches the caller: keep
            // this attempt's messages until the end is seen.
            let mut batch = Vec::new();
            match self.read_replies(reply, op, &mut batch)? {
                Attempt::Done => {
                    batch.into_iter().for_each(&mut sink);
                    return Ok(());
                }
                Attempt::Retry => continue,
            }
        }
        Err(Error::Protocol(format!(
            "{}: reply still truncated or interrupted after {MAX_ATTEMPTS} attempts",
            op()
        )))
    }

    /// Reads datagrams until the reply to `self.seq` is complete. A reply
    /// that fails (undecodable message, kernel error) is still read to its
    /// end, so no half-read dump is left behind to make the next one fail
    /// with EBUSY.
    fn read_replies(
        &mut self,
        reply: Reply,
        op: &dyn Fn() -> String,
        out: &mut Vec<RouteNetlinkMessage>,
    ) -> Result<Attempt> {
        let mut retry = false;
        let mut failure = None;
        loop {
            let Some(truncated) = self.recv(false, op)? else {
                continue;
            };
            if truncated {
                if reply == Reply::Ack {
                    // An ACK echoes only our header (NETLINK_CAP_ACK); it
                    // cannot outgrow the buffer unless the protocol is broken.
                    return Err(Error::Protocol(format!("{}: truncated ACK", op())));
                }
                if reply == Reply::Dump {
                    // The lost datagram may have held NLMSG_DONE. The kernel
                    // queues the next dump chunk during each recv, so reading
                    // without blocking until the queue is empty drains the
                    // dump; then it can be asked for again.
                    while self.recv(true, op)?.is_some() {}
                }
                return failure.map_or(Ok(Attempt::Retry), Err);
            }
            let end = self.parse_batch(reply, op, out, &mut retry, &mut failure)?;
            if end {
                return match failure {
                    Some(e) => Err(e),
                    None if retry => Ok(Attempt::Retry),
                    None => Ok(Attempt::Done),
                };
            }
        }
    }

    /// Receives one datagram into `recv_buf`. Returns whether it was
    /// truncated (the buffer then grows for the next attempt), or `None`
    /// for EINTR, and for EAGAIN when `nonblocking`.
    fn recv(&mut self, nonblocking: bool, op: &dyn Fn() -> String) -> Result<Option<bool>> {
        self.recv_buf.clear();
        let cap = self.recv_buf.capacity();
        let mut flags = libc::MSG_TRUNC;
        if nonblocking {
            flags |= libc::MSG_DONTWAIT;
        }
        match self.socket.recv(&mut self.recv_buf, flags) {
            // With MSG_TRUNC the kernel reports the datagram's real length.
            Ok(n) if n > cap => {
                // Grow at least to the default and by doubling, so that a
                // retried dump (whose chunks the kernel sizes by our buffer)
                // does not truncate again.
                let want = n.max(cap * 2).max(RECV_BUF).next_power_of_two();
                self.recv_buf = Vec::with_capacity(want);
                Ok(Some(true))
            }
            Ok(_) => Ok(Some(false)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) if nonblocking && e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(Error::io(format!("{}: receive", op()), e)),
        }
    }

    /// Decodes the messages in `recv_buf` that answer `self.seq` into
    /// `out`; returns whether the reply is complete. Notes a dump the kernel
    /// flagged as inconsistent in `interrupted` and the first failure in
    /// `failure`, and goes on reading either way.
    fn parse_batch(
        &self,
        reply: Reply,
        op: &dyn Fn() -> String,
        out: &mut Vec<RouteNetlinkMessage>,
        interrupted: &mut bool,
        failure: &mut Option<Error>,
    ) -> Result<bool> {
        for raw in messages(&self.recv_buf) {
            // A broken header leaves no way to find the next message.
            let raw =
                raw.map_err(|e| Error::Protocol(format!("{}: bad netlink header: {e}", op())))?;
            if raw.seq != self.seq {
                // Left over from an earlier request.
                continue;
            }
            *interrupted |= raw.flags & NLM_F_DUMP_INTR != 0;
            // Whether this message ends the reply does not depend on being
            // able to decode it.
            let end = raw.kind == NLMSG_ERROR
                || raw.kind == NLMSG_DONE
                || (reply == Reply::One && raw.flags & NLM_F_MULTIPART == 0);
            let error = decode(&raw, op, out);
            if failure.is_none() {
                *failure = error;
            }
            if end {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// One message of a received datagram, header fields read, body not yet
/// decoded.
struct Raw<'a> {
    seq: u32,
    flags: u16,
    kind: u16,
    bytes: &'a [u8],
}

/// The messages of a datagram in order; a broken header ends it with an
/// error, since there is then no way to find the next message.
fn messages(buf: &[u8]) -> impl Iterator<Item = std::result::Result<Raw<'_>, String>> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if buf.len().saturating_sub(offset) < NLMSG_HDRLEN {
            return None;
        }
        let raw = match NetlinkBuffer::new_checked(&buf[offset..]) {
            Ok(raw) => raw,
            Err(e) => {
                offset = buf.len();
                return Some(Err(e.to_string()));
            }
        };
        let len = raw.length() as usize;
        let msg = Raw {
            seq: raw.sequence_number(),
            flags: raw.flags(),
            kind: raw.message_type(),
            bytes: &buf[offset..offset + len],
        };
        offset += align4(len);
        Some(Ok(msg))
    })
}

/// Decodes one message: an inner message goes to `out`; an error, an
/// unexpected message or an undecodable one becomes the returned error.
fn decode(
    raw: &Raw<'_>,
    op: &dyn Fn() -> String,
    out: &mut Vec<RouteNetlinkMessage>,
) -> Option<Error> {
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw.bytes) {
        Ok(msg) => payload(msg.payload, raw.flags, op, out),
        Err(e) => Some(Error::Protocol(format!(
            "{}: cannot decode reply: {e}",
            op()
        ))),
    }
}

/// Takes one decoded message: an inner message goes to `out`; an error or
/// an unexpected message becomes the returned error.
fn payload(
    payload: NetlinkPayload<RouteNetlinkMessage>,
    flags: u16,
    op: &dyn Fn() -> String,
    out: &mut Vec<RouteNetlinkMessage>,
) -> Option<Error> {
    match payload {
        NetlinkPayload::InnerMessage(inner) => {
            out.push(inner);
            None
        }
        NetlinkPayload::Error(err) => {
            // Code 0 is the ACK.
            let code = err.code?;
            let errno = code.get().checked_neg().unwrap_or(libc::EIO);
            let mut what = op();
            if let Some(reason) = ext_ack_message(flags, &err.header) {
                what = format!("{what} [{reason}]");
            }
            Some(Error::kernel(what, errno))
        }
        // A dump that failed part-way ends with a negative errno in DONE.
        NetlinkPayload::Done(done) if done.code < 0 => Some(Error::kernel(op(), -done.code)),
        NetlinkPayload::Done(_) | NetlinkPayload::Noop => None,
        other => Some(Error::Protocol(format!(
            "{}: unexpected reply {other:?}",
            op()
        ))),
    }
}

/// A request header; length, type and sequence number are filled in when
/// the message is sent.
fn header(flags: u16) -> NetlinkHeader {
    let mut h = NetlinkHeader::default();
    h.flags = flags;
    h
}

/// Appends `msg` to `buf` (finalized: length and type filled in), padded to
/// a 4-byte boundary so that another message can follow it.
fn append(msg: &mut NetlinkMessage<RouteNetlinkMessage>, buf: &mut Vec<u8>) {
    msg.finalize();
    let start = buf.len();
    buf.resize(start + align4(msg.buffer_len()), 0);
    msg.serialize(&mut buf[start..]);
}

/// Netlink messages start on 4-byte boundaries.
fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// The kernel's extended-ack reason from an NLMSG_ERROR payload (after the
/// errno): the echoed request (only its header when capped), then
/// attributes.
fn ext_ack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HDRLEN {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        align4(u32::from_ne_bytes(payload[..4].try_into().ok()?) as usize)
    };
    let mut tlvs = payload.get(echoed..)?;
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &tlvs[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        tlvs = tlvs.get(align4(len)..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_reason_after_capped_header() {
        let mut payload = vec![0u8; NLMSG_HDRLEN];
        let msg = b"Nexthop has invalid gateway\0";
        let len = 4 + msg.len();
        payload.extend_from_slice(&(len as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(msg);
        let got = ext_ack_message(NLM_F_CAPPED | NLM_F_ACK_TLVS, &payload);
        assert_eq!(got.as_deref(), Some("Nexthop has invalid gateway"));
        assert_eq!(ext_ack_message(NLM_F_CAPPED, &payload), None);
    }

    #[test]
    fn ext_ack_after_uncapped_echo() {
        // An uncapped echo is the whole request: its length is in its header.
        let mut payload = vec![0u8; 24];
        payload[..4].copy_from_slice(&24u32.to_ne_bytes());
        payload.extend_from_slice(&8u16.to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(b"bad\0");
        assert_eq!(
            ext_ack_message(NLM_F_ACK_TLVS, &payload).as_deref(),
            Some("bad")
        );
    }

    #[test]
    fn alignment() {
        assert_eq!(align4(0), 0);
        assert_eq!(align4(17), 20);
        assert_eq!(align4(20), 20);
    }
}
