//! The echo protocol, as plain functions over bytes.
//!
//! Request: one line (TCP) or one datagram (UDP) — the prober sends a random
//! nonce. Reply: `<request>\n<peer>\n`, where the peer is the client's
//! address as the server saw it (`ip:port` or `[ip]:port`), so Service tests
//! can tell a preserved source from a masqueraded one.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest request line the server reads; a longer one is cut here (the
/// prober's nonces are far shorter).
pub(crate) const MAX_REQUEST: usize = 1024;

/// Longest reply the prober accepts: a request plus an IPv6 address with
/// scope and port.
pub(crate) const MAX_REPLY: usize = MAX_REQUEST + 128;

/// Why an echo did not prove a round trip.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EchoError {
    /// The connection ended before both lines arrived.
    #[error("short echo ({0} bytes): the peer closed before the reply was complete")]
    Short(usize),
    /// Something answered, but not with our nonce.
    #[error("echo mismatch: sent {sent:?}, got {got:?}")]
    Mismatch {
        /// What we sent.
        sent: String,
        /// The first line that came back.
        got: String,
    },
}

/// A fresh nonce: unique per probe, unpredictable enough that a stale or
/// foreign reply never matches. `RandomState` is seeded from the OS per
/// thread; the counter and clock keep values apart within one seed.
pub(crate) fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut words = [0u64; 2];
    for (i, word) in words.iter_mut().enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(count);
        h.write_u64(nanos);
        h.write_u32(std::process::id());
        h.write_usize(i);
        *word = h.finish();
    }
    format!("weft-{:016x}{:016x}", words[0], words[1])
}

/// The request in a received line or datagram: everything before the first
/// newline (without a `\r`), at most [`MAX_REQUEST`] bytes.
pub(crate) fn request_of(data: &[u8]) -> &[u8] {
    let line = match data.iter().position(|&b| b == b'\n') {
        Some(end) => &data[..end],
        None => data,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    &line[..line.len().min(MAX_REQUEST)]
}

/// The server's answer to `request` from `peer`.
pub(crate) fn reply(request: &[u8], peer: SocketAddr) -> Vec<u8> {
    let peer = peer.to_string();
    let mut out = Vec::with_capacity(request.len() + peer.len() + 2);
    out.extend_from_slice(request);
    out.push(b'\n');
    out.extend_from_slice(peer.as_bytes());
    out.push(b'\n');
    out
}

/// Whether `data` holds a whole reply (two lines), so the prober can stop
/// reading without waiting for the close.
pub(crate) fn is_complete(data: &[u8]) -> bool {
    data.iter().filter(|&&b| b == b'\n').count() >= 2
}

/// Checks a reply against the nonce we sent; returns the peer address the
/// server reported.
pub(crate) fn parse_reply(nonce: &str, data: &[u8]) -> Result<String, EchoError> {
    if !is_complete(data) {
        // A complete first line that is not ours is a mismatch, whatever
        // follows; only an unfinished echo of our nonce is "short".
        if let Some(end) = data.iter().position(|&b| b == b'\n')
            && &data[..end] != nonce.as_bytes()
        {
            return Err(mismatch(nonce, &data[..end]));
        }
        return Err(EchoError::Short(data.len()));
    }
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let echoed = lines.next().unwrap_or_default();
    if echoed != nonce {
        return Err(mismatch(nonce, echoed.as_bytes()));
    }
    Ok(lines.next().unwrap_or_default().to_string())
}

fn mismatch(nonce: &str, got: &[u8]) -> EchoError {
    EchoError::Mismatch {
        sent: nonce.to_string(),
        got: String::from_utf8_lossy(&got[..got.len().min(80)]).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_distinct_and_line_safe() {
        let a = nonce();
        let b = nonce();
        assert_ne!(a, b);
        assert_eq!(a.len(), 5 + 32);
        assert!(a.bytes().all(|c| c.is_ascii_graphic()), "{a}");
        let other = std::thread::spawn(nonce).join().unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn request_is_the_first_line() {
        assert_eq!(request_of(b"abc\nrest"), b"abc");
        assert_eq!(request_of(b"abc\r\n"), b"abc");
        assert_eq!(request_of(b"abc"), b"abc");
        assert_eq!(request_of(b""), b"");
        assert_eq!(request_of(&[b'x'; 5000]).len(), MAX_REQUEST);
    }

    #[test]
    fn reply_names_the_peer_per_family() {
        let v4: SocketAddr = "10.1.2.3:4567".parse().unwrap();
        assert_eq!(reply(b"n1", v4), b"n1\n10.1.2.3:4567\n");
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(reply(b"n2", v6), b"n2\n[fd00::1]:80\n");
    }

    #[test]
    fn reply_round_trips() {
        let n = nonce();
        let peer: SocketAddr = "[fd00::2]:40000".parse().unwrap();
        let data = reply(n.as_bytes(), peer);
        assert!(is_complete(&data));
        assert_eq!(parse_reply(&n, &data).unwrap(), "[fd00::2]:40000");
    }

    #[test]
    fn wrong_or_short_echoes_never_pass() {
        let n = "weft-abc";
        assert_eq!(parse_reply(n, b""), Err(EchoError::Short(0)));
        assert_eq!(parse_reply(n, b"weft-abc"), Err(EchoError::Short(8)));
        assert_eq!(
            parse_reply(n, b"weft-abc\n10.0.0.1:5"),
            Err(EchoError::Short(19))
        );
        assert!(matches!(
            parse_reply(n, b"weft-abd\n10.0.0.1:5\n"),
            Err(EchoError::Mismatch { .. })
        ));
        assert!(matches!(
            parse_reply(n, b"HTTP/1.1 400 Bad Request\r\n"),
            Err(EchoError::Mismatch { .. })
        ));
        // A prefix of the nonce is not the nonce.
        assert!(matches!(
            parse_reply(n, b"weft-ab\nx\n"),
            Err(EchoError::Mismatch { .. })
        ));
    }
}
