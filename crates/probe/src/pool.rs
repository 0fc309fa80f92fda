//! The server's bounded set of connection workers.
//!
//! The event loop accepts; a worker answers one connection at a time. The
//! number of workers grows on demand up to [`MAX_WORKERS`] and the queue in
//! front of them holds at most [`QUEUE`] connections, so thousands of
//! clients never mean thousands of threads: when everything is busy the
//! event loop waits, and the kernel's accept backlog holds the rest.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::wire::{MAX_REQUEST, reply, request_of};

/// Most threads answering connections at once.
pub(crate) const MAX_WORKERS: usize = 32;
/// Accepted connections waiting for a worker.
const QUEUE: usize = 1024;
/// How long a client may take to send its line or take our reply; bounds
/// how long one slow client can hold a worker.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for the client's close after our reply.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes read while waiting for that close.
const DRAIN_LIMIT: usize = 64 * 1024;

/// One accepted connection.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
}

/// Workers fed through a bounded queue.
pub(crate) struct Pool {
    tx: Option<SyncSender<Conn>>,
    rx: Arc<Mutex<Receiver<Conn>>>,
    idle: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(crate) fn new() -> Pool {
        let (tx, rx) = sync_channel(QUEUE);
        Pool {
            tx: Some(tx),
            rx: Arc::new(Mutex::new(rx)),
            idle: Arc::new(AtomicUsize::new(0)),
            workers: Vec::new(),
        }
    }

    /// Hands a connection to a worker, starting one when none is idle and
    /// the limit allows. Blocks while the queue is full (backpressure).
    pub(crate) fn submit(&mut self, conn: Conn) {
        if self.idle.load(Ordering::Acquire) == 0 && self.workers.len() < MAX_WORKERS {
            self.spawn_worker();
        }
        if self.workers.is_empty() {
            // Not even one thread could start: answer here rather than
            // leave the client hanging.
            answer_logged(conn);
            return;
        }
        if let Some(tx) = &self.tx
            && let Err(e) = tx.send(conn)
        {
            // Only possible when every worker has died (panicked).
            answer_logged(e.0);
        }
    }

    fn spawn_worker(&mut self) {
        let rx = Arc::clone(&self.rx);
        let idle = Arc::clone(&self.idle);
        let name = format!("weft-echo-{}", self.workers.len());
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || worker(&rx, &idle))
        {
            Ok(handle) => self.workers.push(handle),
            Err(e) => tracing::warn!("echo server: start a worker thread: {e}"),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends every worker once it has finished its
        // connection (bounded by the I/O timeouts).
        self.tx = None;
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

fn worker(rx: &Mutex<Receiver<Conn>>, idle: &AtomicUsize) {
    loop {
        idle.fetch_add(1, Ordering::AcqRel);
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        idle.fetch_sub(1, Ordering::AcqRel);
        match next {
            Ok(conn) => answer_logged(conn),
            Err(_) => return,
        }
    }
}

fn answer_logged(conn: Conn) {
    let peer = conn.peer;
    if let Err(e) = answer(conn) {
        tracing::debug!("echo server: answer {peer}: {e}");
    }
}

/// Reads one request line, replies `<request>\n<peer>\n` and closes.
fn answer(conn: Conn) -> io::Result<()> {
    let Conn { mut stream, peer } = conn;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = [0u8; MAX_REQUEST + 2];
    let mut len = 0;
    while len < buf.len() && !buf[..len].contains(&b'\n') {
        match stream.read(&mut buf[len..]) {
            Ok(0) => break, // a request without newline ends at the client's FIN
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.write_all(&reply(request_of(&buf[..len]), peer))?;
    stream.shutdown(Shutdown::Write)?;
    // Closing with unread bytes in the receive queue sends an RST, which
    // can destroy the reply before the client has read it; so wait (briefly)
    // for the client to close first, reading whatever it still sends.
    stream.set_read_timeout(Some(LINGER))?;
    let mut drained = 0;
    while drained < DRAIN_LIMIT {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}
