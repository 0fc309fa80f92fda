//! `/healthz` and `/readyz` on a small HTTP listener: liveness says the
//! reconcile loop is turning; readiness says the last pass succeeded and the
//! node state the plugin reads is written.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the loop reports to the health endpoint.
#[derive(Debug)]
pub struct Health {
    inner: Mutex<State>,
    stale_after: Duration,
}

#[derive(Debug)]
struct State {
    last_tick: Instant,
    ready: bool,
    detail: String,
}

impl Health {
    /// Liveness fails when the loop has not ticked for `stale_after`.
    pub fn new(stale_after: Duration) -> Arc<Health> {
        Arc::new(Health {
            inner: Mutex::new(State {
                last_tick: Instant::now(),
                ready: false,
                detail: "starting".into(),
            }),
            stale_after,
        })
    }

    /// Records one pass of the loop.
    pub fn tick(&self, ready: bool, detail: impl Into<String>) {
        let mut s = self.inner.lock().expect("health lock");
        s.last_tick = Instant::now();
        s.ready = ready;
        s.detail = detail.into();
    }

    fn answer(&self, path: &str) -> (u16, String) {
        let s = self.inner.lock().expect("health lock");
        let alive = s.last_tick.elapsed() <= self.stale_after;
        match path {
            "/healthz" if alive => (200, "ok\n".into()),
            "/healthz" => (
                503,
                format!("reconcile loop stalled for {:?}\n", s.last_tick.elapsed()),
            ),
            "/readyz" if alive && s.ready => (200, "ready\n".into()),
            "/readyz" => (503, format!("not ready: {}\n", s.detail)),
            _ => (404, "not found\n".into()),
        }
    }

    /// Serves the endpoints on `addr` from a background thread.
    pub fn serve(self: &Arc<Health>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let health = Arc::clone(self);
        std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut line = String::new();
                    let mut reader = BufReader::new(&stream);
                    if reader.read_line(&mut line).is_err() {
                        continue;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/");
                    let (code, body) = health.answer(path);
                    let reason = match code {
                        200 => "OK",
                        404 => "Not Found",
                        _ => "Service Unavailable",
                    };
                    let mut stream = &stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })?;
        Ok(bound)
    }
}
