//! The connection pools every upstream shares: keep-alive HTTP/1.1 for `http://`
//! endpoints and HTTP/2 with prior knowledge for `h2c://` endpoints, one set per thread,
//! with each endpoint's connect timeout. `pool.rs` holds the per-thread HTTP/1.1 pool,
//! `connect.rs` how connections are made, `target.rs` the parsed endpoint addresses.

mod connect;
mod pool;
mod target;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response, Version, header};
use hyper::body::Incoming;

pub(crate) use pool::Checkin;
pub(crate) use target::Target;

use connect::ConnectTimeouts;
use target::Protocol;

/// Longest wait for a pooled connection to become ready for its next request before a
/// fresh one is used instead.
const POOLED_READY_WAIT: Duration = Duration::from_millis(50);

/// Tuning of the shared pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
    /// A spliced WebSocket (or other upgraded) connection with no bytes in either
    /// direction for this long is closed; no other timeout applies after an upgrade.
    pub upgrade_idle_timeout: Duration,
}

impl Default for ClientSettings {
    /// 60 s idle pool connections (below the 75 s `keepalive_timeout` of nginx and similar server
    /// defaults, so the gateway rather than the upstream closes idle connections and a
    /// request rarely lands on a socket the upstream is closing), 256 idle connections
    /// per endpoint, 5 min for idle WebSocket connections (clients wanting longer send pings, as
    /// browsers and most libraries do).
    fn default() -> Self {
        Self {
            pool_idle_timeout: Duration::from_secs(60),
            max_idle_per_endpoint: 256,
            upgrade_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// The client shared by all upstreams; cloning shares its settings and connect timeouts.
///
/// Connections are pooled per thread: each thread that forwards requests (one per core
/// in the thread-per-core server, see `serve.rs`) keeps its own idle HTTP/1.1
/// connections and its own h2c client, and spawns their connection tasks on its own
/// runtime, so a request and the upstream connection serving it never wake another
/// thread. HTTP/1.1 uses hyper's bare client connections with this small pool instead of
/// hyper-util's pooled client, whose shared pool and background tasks cost more than
/// the forwarding itself.
#[derive(Clone)]
pub struct UpstreamClient {
    id: u64,
    settings: Arc<ClientSettings>,
    connect_timeouts: ConnectTimeouts,
    pub(crate) upgrade_idle_timeout: Duration,
}

/// Distinguishes clients in the per-thread pools (tests run several gateways in one
/// process, each with its own connect timeouts).
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(0);

impl UpstreamClient {
    /// A client with [`ClientSettings::default`].
    pub fn new() -> Self {
        Self::with_settings(&ClientSettings::default())
    }

    /// A client with explicit pool settings.
    pub fn with_settings(settings: &ClientSettings) -> Self {
        Self {
            id: NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed),
            settings: Arc::new(settings.clone()),
            connect_timeouts: ConnectTimeouts::default(),
            upgrade_idle_timeout: settings.upgrade_idle_timeout,
        }
    }

    /// Makes connections to `target` give up after `timeout`. An authority shared by
    /// several upstreams gets the timeout of the one built last.
    pub(crate) fn register_connect_timeout(&self, target: &Target, timeout: Duration) {
        self.connect_timeouts
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.authority.to_string(), timeout);
    }

    /// Sends `request` (its URI is the path and query) to `target`. Upgrades always use
    /// HTTP/1.1: `Upgrade` does not exist in HTTP/2 (RFC 8441's extended CONNECT is not
    /// supported), and h2c servers built on hyper's auto builder speak both.
    ///
    /// An HTTP/1.1 answer comes with its connection's [`Checkin`]: hand it to the
    /// response body, which returns the connection to the pool once the body was read
    /// to its end.
    pub(crate) async fn send(
        &self,
        target: &Target,
        mut request: Request<Body>,
        upgrade: bool,
        now: Instant,
    ) -> Result<(Response<Incoming>, Option<Checkin>), SendError> {
        let http2 = target.protocol == Protocol::H2c && !upgrade;
        if http2 {
            let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
            *request.uri_mut() = target.uri_for(path_and_query)?;
            *request.version_mut() = Version::HTTP_2;
            // HTTP/2 carries the authority in `:authority`, taken from the URI.
            request.headers_mut().remove(header::HOST);
            let client = self.h2c_client();
            return Ok((client.request(request).await?, None));
        }
        if let Some(uri) = target.origin_form(request.uri())? {
            *request.uri_mut() = uri;
        }
        *request.version_mut() = Version::HTTP_11;
        request
            .headers_mut()
            .insert(header::HOST, target.host.clone());
        self.send_http1(target, request, now).await
    }

    /// HTTP/1.1 on a pooled connection when one is idle, on a new one otherwise. A pooled
    /// connection found closed before the request went out is skipped, as hyper-util
    /// does; once the request was sent, a failure is the caller's to judge.
    async fn send_http1(
        &self,
        target: &Target,
        mut request: Request<Body>,
        now: Instant,
    ) -> Result<(Response<Incoming>, Option<Checkin>), SendError> {
        while let Some(mut sender) = self.checkout(&target.authority, now) {
            // A connection returned right after its previous response may need its task
            // to run once more before it takes the next request. One still busy beyond
            // that (an upstream that answered before reading the whole request body,
            // which is still being sent) is closed rather than waited for.
            if !sender.is_ready() {
                match tokio::time::timeout(POOLED_READY_WAIT, sender.ready()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => continue,
                }
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, Some(self.checkin(target, sender)))),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Http(error.into_error())),
                },
            }
        }
        let mut sender = self.connect(target).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(SendError::Http)?;
        Ok((response, Some(self.checkin(target, sender))))
    }
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
/// Why an attempt got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The endpoint and the request path do not form a valid URI.
    #[error("invalid upstream URI")]
    Uri(#[from] http::Error),
    /// No connection to the endpoint could be made: the request was not sent.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The HTTP/1.1 exchange failed after the request was (maybe partly) sent.
    #[error(transparent)]
    Http(hyper::Error),
    /// The h2c client failed.
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
}

impl SendError {
    /// Whether the request never reached the endpoint (safe to retry anywhere).
    pub(crate) fn is_connect(&self) -> bool {
        match self {
            Self::Connect(_) => true,
            Self::Client(error) => error.is_connect(),
            Self::Uri(_) | Self::Http(_) => false,
        }
    }
}
