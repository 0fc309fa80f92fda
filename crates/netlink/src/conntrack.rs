//! Conntrack entries over ctnetlink (NETLINK_NETFILTER, subsystem
//! `NFNL_SUBSYS_CTNETLINK`), without the `conntrack` command: a dump of
//! one family's entries of one transport protocol, filtered by the kernel
//! (`CTA_FILTER`, Linux 5.8 and later), and the deletion of one entry by
//! its original tuple and id.
//!
//! The agent's stale-UDP sweep after a restart reads every UDP entry of
//! the node once and deletes those whose DNAT target left their Service;
//! one socket and one dump instead of a `conntrack` process per front.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_sys::Socket;

use crate::error::{Error, Result};
use crate::nftables::netfilter_socket;
use crate::ns::Netns;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
/// `CTA_FILTER_FLAG(CTA_PROTO_NUM)`: match the original tuple's protocol.
const FILTER_PROTO_NUM: u32 = 1 << 3;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One direction of a connection: addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// A conntrack entry as the dump gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtEntry {
    /// The transport protocol number (17 for UDP).
    pub protocol: u8,
    /// The first packet's direction: where the client sent to.
    pub orig: CtTuple,
    /// The reply direction: after a DNAT its source is the endpoint.
    pub reply: CtTuple,
    /// The conntrack zone (0 unless a rule set one).
    pub zone: u16,
    /// The entry's id: a deletion names it so that a newer entry with the
    /// same tuple is left alone.
    pub id: u32,
}

/// A NETLINK_NETFILTER socket for ctnetlink requests, in the namespace it
/// was opened in.
#[derive(Debug)]
pub struct ConntrackSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl ConntrackSocket {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn new() -> Result<ConntrackSocket> {
        let socket = netfilter_socket("open conntrack netlink socket")?;
        Ok(ConntrackSocket {
            socket,
            seq: 0,
            buf: Vec::with_capacity(128 * 1024),
        })
    }

    /// Opens a socket inside `ns`; it stays bound to `ns`.
    pub fn in_netns(ns: &Netns) -> Result<ConntrackSocket> {
        crate::ns::in_netns(ns, ConntrackSocket::new)
    }

    /// Every entry of `v6`'s family whose original protocol is `protocol`
    /// (the kernel filters; entries of other protocols never reach user
    /// space).
    pub fn dump(&mut self, v6: bool, protocol: u8) -> Result<Vec<CtEntry>> {
        let op = format!(
            "dump {} conntrack entries of protocol {protocol}",
            if v6 { "IPv6" } else { "IPv4" }
        );
        let mut attrs = Vec::new();
        let mut proto = Vec::new();
        attr(&mut proto, CTA_PROTO_NUM, &[protocol]);
        let mut tuple = Vec::new();
        nested(&mut tuple, CTA_TUPLE_PROTO, &proto);
        nested(&mut attrs, CTA_TUPLE_ORIG, &tuple);
        let mut filter = Vec::new();
        attr(
            &mut filter,
            CTA_FILTER_ORIG_FLAGS,
            &FILTER_PROTO_NUM.to_ne_bytes(),
        );
        nested(&mut attrs, CTA_FILTER, &filter);
        let seq = self.send(
            &op,
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            family(v6),
            &attrs,
        )?;
        let mut out = Vec::new();
        loop {
            self.receive(&op)?;
            let mut done = false;
            for msg in messages(&self.buf).map_err(|e| Error::Protocol(format!("{op}: {e}")))? {
                if msg.seq != seq {
                    continue;
                }
                match msg.kind {
                    NLMSG_DONE => done = true,
                    NLMSG_ERROR => {
                        let errno = error_code(msg.body);
                        if errno != 0 {
                            return Err(Error::kernel(op, errno));
                        }
                    }
                    k if k == (NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW) => {
                        if let Some(entry) = parse_entry(msg.body) {
                            out.push(entry);
                        }
                    }
                    _ => {}
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// Deletes `entry` (by original tuple, zone and id). `Ok(false)` when
    /// it is gone already (expired, or replaced by a newer entry).
    pub fn delete(&mut self, entry: &CtEntry) -> Result<bool> {
        let op = format!(
            "delete conntrack entry {}:{} -> {}:{} (protocol {})",
            entry.orig.src, entry.orig.sport, entry.orig.dst, entry.orig.dport, entry.protocol
        );
        let mut attrs = Vec::new();
        let mut tuple = Vec::new();
        tuple_attrs(&mut tuple, entry.protocol, &entry.orig);
        nested(&mut attrs, CTA_TUPLE_ORIG, &tuple);
        if entry.zone != 0 {
            attr(&mut attrs, CTA_ZONE, &entry.zone.to_be_bytes());
        }
        attr(&mut attrs, CTA_ID, &entry.id.to_be_bytes());
        let seq = self.send(
            &op,
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            family(entry.orig.dst.is_ipv6()),
            &attrs,
        )?;
        loop {
            self.receive(&op)?;
            for msg in messages(&self.buf).map_err(|e| Error::Protocol(format!("{op}: {e}")))? {
                if msg.seq == seq && msg.kind == NLMSG_ERROR {
                    return match error_code(msg.body) {
                        0 => Ok(true),
                        libc::ENOENT => Ok(false),
                        errno => Err(Error::kernel(op, errno)),
                    };
                }
            }
        }
    }

    fn send(&mut self, op: &str, msg: u16, flags: u16, family: u8, attrs: &[u8]) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let len = 16 + 4 + attrs.len();
        let mut bytes = Vec::with_capacity(len);
        bytes.extend((len as u32).to_ne_bytes());
        bytes.extend((NFNL_SUBSYS_CTNETLINK << 8 | msg).to_ne_bytes());
        bytes.extend(flags.to_ne_bytes());
        bytes.extend(self.seq.to_ne_bytes());
        bytes.extend(0u32.to_ne_bytes());
        // nfgenmsg: family, version 0, resource id 0.
        bytes.extend([family, 0, 0, 0]);
        bytes.extend(attrs);
        self.socket
            .send(&bytes, 0)
            .map_err(|e| Error::io(format!("{op}: send"), e))?;
        Ok(self.seq)
    }

    fn receive(&mut self, op: &str) -> Result<()> {
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("{op}: receive"), e)),
            }
        }
    }
}

fn family(v6: bool) -> u8 {
    if v6 { AF_INET6 } else { AF_INET }
}

/// `CTA_TUPLE_IP` and `CTA_TUPLE_PROTO` of `tuple`.
fn tuple_attrs(out: &mut Vec<u8>, protocol: u8, tuple: &CtTuple) {
    let mut ip = Vec::new();
    match (tuple.src, tuple.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            attr(&mut ip, CTA_IP_V4_SRC, &s.octets());
            attr(&mut ip, CTA_IP_V4_DST, &d.octets());
        }
        (s, d) => {
            attr(&mut ip, CTA_IP_V6_SRC, &v6_octets(s));
            attr(&mut ip, CTA_IP_V6_DST, &v6_octets(d));
        }
    }
    nested(out, CTA_TUPLE_IP, &ip);
    let mut proto = Vec::new();
    attr(&mut proto, CTA_PROTO_NUM, &[protocol]);
    attr(&mut proto, CTA_PROTO_SRC_PORT, &tuple.sport.to_be_bytes());
    attr(&mut proto, CTA_PROTO_DST_PORT, &tuple.dport.to_be_bytes());
    nested(out, CTA_TUPLE_PROTO, &proto);
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Appends one attribute, padded to 4 bytes.
fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend(((4 + payload.len()) as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn nested(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    attr(out, kind | NLA_F_NESTED, payload);
}

/// One netlink message of a datagram.
struct Message<'a> {
    kind: u16,
    seq: u32,
    /// What follows the 16-byte header.
    body: &'a [u8],
}

fn messages(buf: &[u8]) -> std::result::Result<Vec<Message<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 16 {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len < 16 || at + len > buf.len() {
            return Err(format!("bad netlink message length {len}"));
        }
        out.push(Message {
            kind: u16::from_ne_bytes([buf[at + 4], buf[at + 5]]),
            seq: u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes")),
            body: &buf[at + 16..at + len],
        });
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// The positive errno of an NLMSG_ERROR body (0: an acknowledgement).
fn error_code(body: &[u8]) -> i32 {
    body.get(..4).map_or(libc::EPROTO, |b| {
        -i32::from_ne_bytes(b.try_into().expect("4 bytes"))
    })
}

/// The attributes of `buf` as (type without flags, payload).
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if buf.len() < at + 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[at], buf[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & !NLA_F_NESTED;
        if len < 4 || at + len > buf.len() {
            return None;
        }
        let payload = &buf[at + 4..at + len];
        at += (len + 3) & !3;
        Some((kind, payload))
    })
}

/// An entry from a `IPCTNL_MSG_CT_NEW` body (nfgenmsg, then attributes);
/// `None` when a tuple is missing or not of IP and ports.
fn parse_entry(body: &[u8]) -> Option<CtEntry> {
    let (mut orig, mut reply, mut zone, mut id) = (None, None, 0, 0);
    for (kind, payload) in attrs(body.get(4..)?) {
        match kind {
            CTA_TUPLE_ORIG => orig = parse_tuple(payload),
            CTA_TUPLE_REPLY => reply = parse_tuple(payload),
            CTA_ZONE => zone = u16::from_be_bytes(payload.get(..2)?.try_into().ok()?),
            CTA_ID => id = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?),
            _ => {}
        }
    }
    let ((protocol, orig), (_, reply)) = (orig?, reply?);
    Some(CtEntry {
        protocol,
        orig,
        reply,
        zone,
        id,
    })
}

fn parse_tuple(buf: &[u8]) -> Option<(u8, CtTuple)> {
    let (mut src, mut dst, mut protocol, mut sport, mut dport) = (None, None, None, 0, 0);
    for (kind, payload) in attrs(buf) {
        match kind {
            CTA_TUPLE_IP => {
                for (k, p) in attrs(payload) {
                    let ip = match k {
                        CTA_IP_V4_SRC | CTA_IP_V4_DST => {
                            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(p).ok()?))
                        }
                        CTA_IP_V6_SRC | CTA_IP_V6_DST => {
                            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(p).ok()?))
                        }
                        _ => continue,
                    };
                    if matches!(k, CTA_IP_V4_SRC | CTA_IP_V6_SRC) {
                        src = Some(ip);
                    } else {
                        dst = Some(ip);
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, p) in attrs(payload) {
                    match k {
                        CTA_PROTO_NUM => protocol = p.first().copied(),
                        CTA_PROTO_SRC_PORT => sport = u16::from_be_bytes(p.try_into().ok()?),
                        CTA_PROTO_DST_PORT => dport = u16::from_be_bytes(p.try_into().ok()?),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        protocol?,
        CtTuple {
            src: src?,
            dst: dst?,
            sport,
            dport,
        },
    ))
}

#[cfg(test)]
#[path = "conntrack_tests.rs"]
mod tests;
