//! Socket creation shared by the server and the prober, and the errno
//! classes both need to tell "not supported here" from real failures.

use std::io;
use std::net::SocketAddr;

use nix::errno::Errno;
use socket2::{Domain, Socket, Type};
use weft_model::Protocol;

/// A socket of `protocol` for `addr`'s family. IPv6 sockets get
/// IPV6_V6ONLY, so a v6 listener never shadows the v4 one on the same port
/// and a v4 peer is never seen as `::ffff:a.b.c.d`.
pub(crate) fn new_socket(protocol: Protocol, addr: &SocketAddr) -> io::Result<Socket> {
    let (ty, proto) = match protocol {
        Protocol::Tcp => (Type::STREAM, socket2::Protocol::TCP),
        Protocol::Udp => (Type::DGRAM, socket2::Protocol::UDP),
        // One-to-one style: behaves like a TCP stream (connect, accept,
        // read, write), so the TCP code paths serve it unchanged.
        Protocol::Sctp => (Type::STREAM, socket2::Protocol::SCTP),
    };
    let socket = Socket::new(Domain::for_address(*addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// Whether creating a socket failed because the kernel lacks the protocol
/// (no SCTP module): EPROTONOSUPPORT or ESOCKTNOSUPPORT.
pub(crate) fn is_protocol_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::EPROTONOSUPPORT | Errno::ESOCKTNOSUPPORT)
    )
}

/// Whether the address family is missing (a kernel without IPv6).
pub(crate) fn is_family_unsupported(err: &io::Error) -> bool {
    err.raw_os_error().map(Errno::from_raw) == Some(Errno::EAFNOSUPPORT)
}

/// Whether an error is this host's own shortage or fault (descriptors,
/// memory, local ports) rather than something the network did: such a
/// failure says nothing about reachability.
pub(crate) fn is_local_failure(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(
            Errno::EMFILE
                | Errno::ENFILE
                | Errno::ENOBUFS
                | Errno::ENOMEM
                | Errno::EADDRINUSE
                | Errno::EADDRNOTAVAIL
                | Errno::EBADF
                | Errno::ENOTSOCK
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classes() {
        let e = |n: Errno| io::Error::from_raw_os_error(n as i32);
        assert!(is_protocol_unsupported(&e(Errno::EPROTONOSUPPORT)));
        assert!(is_protocol_unsupported(&e(Errno::ESOCKTNOSUPPORT)));
        assert!(!is_protocol_unsupported(&e(Errno::EAFNOSUPPORT)));
        assert!(is_family_unsupported(&e(Errno::EAFNOSUPPORT)));
        assert!(is_local_failure(&e(Errno::EMFILE)));
        // What the network (or a policy) does is never a local failure.
        for n in [
            Errno::ECONNREFUSED,
            Errno::EHOSTUNREACH,
            Errno::ENETUNREACH,
            Errno::ETIMEDOUT,
            Errno::EPERM,
        ] {
            assert!(!is_local_failure(&e(n)), "{n}");
        }
    }

    #[test]
    fn v6_sockets_are_v6_only() {
        let addr: SocketAddr = "[::1]:0".parse().unwrap();
        match new_socket(Protocol::Tcp, &addr) {
            Ok(s) => assert!(s.only_v6().unwrap()),
            Err(e) if is_family_unsupported(&e) => eprintln!("no IPv6 here: {e}"),
            Err(e) => panic!("{e}"),
        }
    }
}
