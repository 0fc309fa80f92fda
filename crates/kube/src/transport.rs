//! The connections to the API server: kube's own request stack over a
//! TCP connector that notices a dead connection within seconds.
//!
//! Why not `Client::try_from(config)`: its connector sets no TCP
//! keepalive, so a connection that dies silently (the node's address that
//! was its source removed — a node moving to a new underlay address — a
//! partition, an API server host that lost power) looks idle, not broken.
//! A watch on it then delivers nothing until kube-runtime's idle timeout
//! (the 290 s server-side watch timeout plus a margin): for minutes the
//! agent would apply a cluster that has moved on, while reporting itself
//! healthy. With keepalive probes and `TCP_USER_TIMEOUT` the kernel fails
//! such a connection after [`DEAD_AFTER`]; the watcher then resumes from
//! its last resourceVersion over a fresh connection (from whatever address
//! the node has now). client-go reaches the same end with HTTP/2 pings.

use std::time::Duration;

use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ConfigExt};
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// Idle time on a connection before the kernel sends its first keepalive
/// probe. A watch of a quiet kind is idle for long stretches, and only a
/// probe finds out whether its peer is still there. The cost is one small
/// packet and its ACK per idle connection every few seconds, handled in
/// the kernels on both ends.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);

/// Time between unanswered keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// Unanswered probes before the connection is declared dead.
const KEEPALIVE_PROBES: u32 = 3;

/// How long a connection may go without hearing from its peer — idle with
/// probes unanswered, or with data unacknowledged — before the kernel
/// fails it (`TCP_USER_TIMEOUT`; once set, Linux uses it instead of the
/// probe count). Without it, data sent into a dead connection (a request
/// on a pooled connection) is retransmitted for about 15 minutes.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(
    KEEPALIVE_IDLE.as_secs() + KEEPALIVE_PROBES as u64 * KEEPALIVE_INTERVAL.as_secs(),
);

/// A client for `config` with kube's default request stack (base URI,
/// retries of 429/503/504, authentication, extra headers, the connect,
/// read and write timeouts) over a connector with TCP keepalive and
/// `TCP_USER_TIMEOUT` ([`DEAD_AFTER`]).
pub(crate) fn client(config: Config) -> Result<Client, kube::Error> {
    let mut http = HttpConnector::new();
    // The scheme is checked by the TLS layer above, which also serves
    // plain http:// servers.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(KEEPALIVE_IDLE));
    http.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    http.set_keepalive_retries(Some(KEEPALIVE_PROBES));
    http.set_tcp_user_timeout(Some(DEAD_AFTER));
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut timeouts = TimeoutConnector::new(https);
    timeouts.set_connect_timeout(config.connect_timeout);
    timeouts.set_read_timeout(config.read_timeout);
    timeouts.set_write_timeout(config.write_timeout);
    timeouts.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(timeouts);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_connection_is_failed_well_within_a_watch_timeout() {
        // The user timeout replaces the probe count on Linux: it must leave
        // room for every probe, and stay far below the 290 s after which
        // kube-runtime would give up on a silent watch by itself.
        assert_eq!(DEAD_AFTER, Duration::from_secs(11));
        assert!(DEAD_AFTER >= KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES);
    }

    #[tokio::test]
    async fn builds_for_https_and_http_servers() {
        for url in ["https://127.0.0.1:6443", "http://127.0.0.1:8080"] {
            let config = Config::new(url.parse().unwrap());
            let client = client(config).expect(url);
            assert_eq!(client.default_namespace(), "default");
        }
    }
}
