//! The NETLINK_NETFILTER socket that commits an [`NftBatch`].

use std::io;
use std::time::{Duration, Instant};

use netlink_sys::{Socket, SocketAddr};

use super::NftBatch;
use crate::error::{Error, Result};
use crate::ns::Netns;

/// `NETLINK_NETFILTER`.
const NETLINK_NETFILTER: isize = 12;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// In an NLMSG_ERROR: only the request's header is echoed, extended-ack
/// attributes follow.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Most messages in one committed batch: each is acknowledged in a
/// datagram of its own, and the socket's default receive buffer holds a
/// few hundred; a larger change is refused before anything is sent (and
/// is `nft -f`'s job), so that no acknowledgement can be lost.
const MAX_MESSAGES: usize = 128;
/// How long [`NftSocket::commit`] waits for the kernel's acknowledgements.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// A batch larger than this is refused before sending: the kernel takes a
/// batch only whole in one datagram, and the socket's default send buffer
/// holds about 200 KiB. Larger changes are `nft -f`'s job.
const MAX_BATCH: usize = 128 * 1024;

/// A NETLINK_NETFILTER socket in one network namespace (the one it was
/// opened in), committing one [`NftBatch`] at a time.
#[derive(Debug)]
pub struct NftSocket {
    socket: Socket,
    seq: u32,
    recv_buf: Vec<u8>,
}

impl NftSocket {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn new() -> Result<NftSocket> {
        let socket = netfilter_socket("open netfilter netlink socket")?;
        // Optional: the kernel's reason for a refusal, and short ACKs.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(NftSocket {
            socket,
            seq: 0,
            recv_buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Opens a socket inside `ns`; it stays bound to `ns`.
    pub fn in_netns(ns: &Netns) -> Result<NftSocket> {
        crate::ns::in_netns(ns, NftSocket::new)
    }

    /// Sends `batch` as one transaction and waits for every message's
    /// acknowledgement. The kernel applies all of it or nothing; the error
    /// names the first message it refused (with the kernel's reason when it
    /// gives one). An empty batch sends nothing; one of more than 128
    /// messages or 128 KiB is refused unsent ([`Error::Invalid`]).
    pub fn commit(&mut self, batch: &NftBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if batch.len() > MAX_MESSAGES {
            return Err(Error::Invalid(format!(
                "nftables batch of {} messages is over {MAX_MESSAGES}",
                batch.len()
            )));
        }
        let first = self.seq.wrapping_add(1);
        // Room for the batch's sequence numbers without wrapping inside it.
        let first = if first.checked_add(batch.len() as u32 + 2).is_none() {
            1
        } else {
            first
        };
        let bytes = batch.encode(first);
        self.seq = first + batch.len() as u32 + 1;
        if bytes.len() > MAX_BATCH {
            return Err(Error::Invalid(format!(
                "nftables batch of {} bytes ({} messages) is over {MAX_BATCH} bytes",
                bytes.len(),
                batch.len()
            )));
        }
        let op = || batch.op(0).unwrap_or("nftables batch").to_owned();
        self.socket
            .send(&bytes, 0)
            .map_err(|e| Error::io(format!("{}: send", op()), e))?;
        // One acknowledgement per message, all queued while the kernel ran
        // the batch inside `send`. Read without blocking and wait a little
        // when one is not there yet, so that a lost acknowledgement (a
        // full receive buffer) ends in an error, not a hung agent.
        let started = Instant::now();
        let mut acked = 0;
        let mut failure: Option<Error> = None;
        while acked < batch.len() {
            self.recv_buf.clear();
            match self.socket.recv(&mut self.recv_buf, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if started.elapsed() > ACK_TIMEOUT {
                        return Err(Error::Protocol(format!(
                            "{}: {acked} of {} acknowledgements after {ACK_TIMEOUT:?}",
                            op(),
                            batch.len()
                        )));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                Err(e) => return Err(Error::io(format!("{}: receive", op()), e)),
            }
            for (seq, errno, reason) in acks(&self.recv_buf)? {
                let Some(i) = seq.checked_sub(first).map(|i| i as usize) else {
                    continue;
                };
                // Index 0 is the batch's begin: acknowledged only when the
                // kernel refused the whole batch.
                let index = i.checked_sub(1);
                match index {
                    Some(i) if i < batch.len() => acked += 1,
                    Some(_) => continue,
                    None if errno != 0 => acked = batch.len(),
                    None => continue,
                }
                if errno != 0 && failure.is_none() {
                    let name = index
                        .and_then(|i| batch.op(i))
                        .unwrap_or("begin nftables batch");
                    let name = match reason {
                        Some(r) => format!("{name} [{r}]"),
                        None => name.to_owned(),
                    };
                    failure = Some(Error::kernel(name, errno));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// A NETLINK_NETFILTER socket connected to the kernel, in the calling
/// thread's namespace; `op` names the operation in errors.
pub(crate) fn netfilter_socket(op: &str) -> Result<Socket> {
    let socket = Socket::new(NETLINK_NETFILTER).map_err(|e| Error::io(op, e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| Error::io(op, e))?;
    Ok(socket)
}

/// The acknowledgements in a datagram: sequence number, errno (positive,
/// 0 for success) and the kernel's reason.
fn acks(buf: &[u8]) -> Result<Vec<(u32, i32, Option<String>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 16 {
        let word =
            |o: usize| u32::from_ne_bytes(buf[at + o..at + o + 4].try_into().expect("4 bytes"));
        let len = word(0) as usize;
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        let flags = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]);
        let seq = word(8);
        if len < 16 || at + len > buf.len() {
            return Err(Error::Protocol(format!(
                "nftables batch: bad netlink message length {len}"
            )));
        }
        if kind == NLMSG_ERROR && len >= 20 {
            let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
            out.push((seq, -code, reason(&buf[at..at + len], flags)));
        }
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// The extended-ack message of an NLMSG_ERROR, if any.
fn reason(msg: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || msg.len() < 36 {
        return None;
    }
    // After the error code: the request's header, and its body unless
    // capped.
    let echoed = u32::from_ne_bytes(msg[20..24].try_into().ok()?) as usize;
    let mut at = 20
        + if flags & NLM_F_CAPPED != 0 {
            16
        } else {
            (echoed + 3) & !3
        };
    while msg.len() >= at + 4 {
        let len = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]);
        if len < 4 || at + len > msg.len() {
            break;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &msg[at + 4..at + len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        at += (len + 3) & !3;
    }
    None
}

/// [`acks`], for the module's tests.
#[cfg(test)]
pub(super) fn acks_for_tests(buf: &[u8]) -> Result<Vec<(u32, i32, Option<String>)>> {
    acks(buf)
}
