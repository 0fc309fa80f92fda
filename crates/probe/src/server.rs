//! The echo server every lab pod runs.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use weft_model::Protocol;

use crate::error::{Error, Result};
use crate::pool::{Conn, Pool};
use crate::protocol::protocol_name;
use crate::socket::{is_family_unsupported, is_protocol_unsupported, new_socket};
use crate::wire::{reply, request_of};

/// Pending connections the kernel queues per stream listener while all
/// workers are busy.
const BACKLOG: i32 = 1024;
/// Most connections or datagrams taken from one listener per wake-up, so a
/// flood on one port cannot starve the others.
const BURST: usize = 256;
/// Pause after running out of descriptors or memory in accept: the
/// listener stays readable, and retrying at once would only spin.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(50);

/// What the echo server listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOpts {
    /// Protocol and port pairs; each is served on every enabled family.
    /// Port 0 asks the kernel for a free port per socket (see
    /// [`Server::local_addrs`]).
    pub ports: Vec<(Protocol, u16)>,
    /// Listen on `0.0.0.0`.
    pub bind_v4: bool,
    /// Listen on `[::]` (IPV6_V6ONLY, separate from the v4 socket).
    pub bind_v6: bool,
}

impl ServeOpts {
    /// Both families on `ports`.
    pub fn new(ports: Vec<(Protocol, u16)>) -> ServeOpts {
        ServeOpts {
            ports,
            bind_v4: true,
            bind_v6: true,
        }
    }
}

/// A running echo server: its sockets live in the network namespace of the
/// thread that called [`Server::start`], its threads may run anywhere.
/// Dropping it stops the server.
#[derive(Debug)]
pub struct Server {
    local: Vec<(Protocol, SocketAddr)>,
    /// Closing this end wakes the event loop and ends it.
    stop: Option<UnixStream>,
    event_loop: Option<JoinHandle<Result<()>>>,
}

/// Serves `opts` until the process is killed (`weftctl lab serve`).
/// Returns only when setup fails or the event loop hits an error it cannot
/// survive.
pub fn serve(opts: &ServeOpts) -> Result<()> {
    Server::start(opts)?.wait()
}

impl Server {
    /// Binds every listener (in the calling thread's namespace) and starts
    /// serving. Fails when a port cannot be bound; an SCTP port on a kernel
    /// without SCTP, or IPv6 on a kernel without IPv6, is logged once and
    /// skipped.
    pub fn start(opts: &ServeOpts) -> Result<Server> {
        let listeners = bind_all(opts)?;
        let local = listeners.iter().map(|l| (l.protocol, l.addr)).collect();
        let (stop, wake) = UnixStream::pair().map_err(|e| Error::io("create wake-up socket", e))?;
        let event_loop = std::thread::Builder::new()
            .name("weft-echo".into())
            .spawn(move || run(&listeners, &wake))
            .map_err(|e| Error::io("start echo server thread", e))?;
        Ok(Server {
            local,
            stop: Some(stop),
            event_loop: Some(event_loop),
        })
    }

    /// The bound sockets' addresses (with the kernel's choice for port 0).
    pub fn local_addrs(&self) -> &[(Protocol, SocketAddr)] {
        &self.local
    }

    /// Blocks while the server runs; it ends only on a fatal error.
    pub fn wait(mut self) -> Result<()> {
        match self.event_loop.take() {
            Some(handle) => join(handle),
            None => Ok(()),
        }
    }

    /// Stops serving, waits for connections in progress (bounded by their
    /// I/O timeouts) and reports an error the event loop ended with.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.stop = None;
        match self.event_loop.take() {
            Some(handle) => join(handle),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("echo server: {e}");
        }
    }
}

fn join(handle: JoinHandle<Result<()>>) -> Result<()> {
    handle.join().unwrap_or_else(|_| {
        Err(Error::Invalid(
            "echo server event loop panicked".to_string(),
        ))
    })
}

/// One bound socket.
struct Listener {
    protocol: Protocol,
    addr: SocketAddr,
    socket: Socket,
}

enum Socket {
    /// TCP or SCTP (one-to-one style, accepted like TCP).
    Stream(TcpListener),
    Datagram(UdpSocket),
}

impl Listener {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            Socket::Stream(l) => l.as_fd(),
            Socket::Datagram(s) => s.as_fd(),
        }
    }
}

fn bind_all(opts: &ServeOpts) -> Result<Vec<Listener>> {
    if opts.ports.is_empty() {
        return Err(Error::Invalid("echo server: no ports to serve".into()));
    }
    let mut ips = Vec::new();
    if opts.bind_v4 {
        ips.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    if opts.bind_v6 {
        ips.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }
    if ips.is_empty() {
        return Err(Error::Invalid(
            "echo server: neither IPv4 nor IPv6 enabled".into(),
        ));
    }
    let mut listeners = Vec::new();
    let (mut warned_sctp, mut warned_v6) = (false, false);
    for &(protocol, port) in &opts.ports {
        for &ip in &ips {
            let addr = SocketAddr::new(ip, port);
            match bind(protocol, addr) {
                Ok(l) => listeners.push(l),
                Err(e) if protocol == Protocol::Sctp && is_protocol_unsupported(&e) => {
                    if !std::mem::replace(&mut warned_sctp, true) {
                        tracing::warn!("echo server: SCTP not served, the kernel has no SCTP: {e}");
                    }
                }
                Err(e) if ip.is_ipv6() && is_family_unsupported(&e) => {
                    if !std::mem::replace(&mut warned_v6, true) {
                        tracing::warn!("echo server: IPv6 not served, the kernel has no IPv6: {e}");
                    }
                }
                Err(e) => {
                    let op = format!("echo server: listen on {} {addr}", protocol_name(protocol));
                    return Err(Error::io(op, e));
                }
            }
        }
    }
    Ok(listeners)
}

fn bind(protocol: Protocol, addr: SocketAddr) -> io::Result<Listener> {
    let s = new_socket(protocol, &addr)?;
    let stream = protocol != Protocol::Udp;
    if stream {
        // A restarted server must get its port back while old connections
        // sit in TIME_WAIT.
        s.set_reuse_address(true)?;
    }
    s.bind(&addr.into())?;
    if stream {
        s.listen(BACKLOG)?;
    }
    s.set_nonblocking(true)?;
    let bound = s
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound socket has no IP address"))?;
    let socket = if stream {
        Socket::Stream(TcpListener::from(s))
    } else {
        Socket::Datagram(UdpSocket::from(s))
    };
    Ok(Listener {
        protocol,
        addr: bound,
        socket,
    })
}

/// The event loop: waits on every listener and the stop socket.
fn run(listeners: &[Listener], wake: &UnixStream) -> Result<()> {
    let mut pool = Pool::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds: Vec<PollFd> = listeners
            .iter()
            .map(|l| PollFd::new(l.fd(), PollFlags::POLLIN))
            .chain(std::iter::once(PollFd::new(
                wake.as_fd(),
                PollFlags::POLLIN,
            )))
            .collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("echo server: poll", e.into())),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[listeners.len()] {
            // The Server was stopped or dropped.
            return Ok(());
        }
        for (listener, _) in listeners.iter().zip(&ready).filter(|(_, r)| **r) {
            match &listener.socket {
                Socket::Stream(l) => accept_burst(l, listener, &mut pool),
                Socket::Datagram(s) => echo_burst(s, listener, &mut buf),
            }
        }
    }
}

fn accept_burst(l: &TcpListener, listener: &Listener, pool: &mut Pool) {
    for _ in 0..BURST {
        match l.accept() {
            Ok((stream, peer)) => pool.submit(Conn { stream, peer }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e)
                if matches!(
                    e.raw_os_error().map(Errno::from_raw),
                    Some(Errno::ECONNABORTED | Errno::EINTR | Errno::EPROTO)
                ) => {}
            Err(e) => {
                tracing::warn!(
                    "echo server: accept on {} {}: {e}",
                    protocol_name(listener.protocol),
                    listener.addr
                );
                std::thread::sleep(EXHAUSTED_PAUSE);
                return;
            }
        }
    }
}

fn echo_burst(s: &UdpSocket, listener: &Listener, buf: &mut [u8]) {
    for _ in 0..BURST {
        match s.recv_from(buf) {
            Ok((len, peer)) => {
                if let Err(e) = s.send_to(&reply(request_of(&buf[..len]), peer), peer) {
                    tracing::debug!("echo server: reply to UDP {peer}: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Unconnected UDP sockets only see errors like a queued
                // ICMP error; nothing to do but carry on.
                tracing::debug!("echo server: receive on UDP {}: {e}", listener.addr);
                return;
            }
        }
    }
}
