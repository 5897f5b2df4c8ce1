//! The connection pools every upstream shares: keep-alive HTTP/1.1 for `http://`
//! endpoints and HTTP/2 with prior knowledge for `h2c://` endpoints, one set per thread,
//! with each endpoint's connect timeout.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::UpstreamConfigError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connect timeout for an authority no upstream registered (cannot happen through
/// [`super::Upstream`], which registers its endpoints first).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for a pooled connection to become ready for its next request before a
/// fresh one is used instead.
const POOLED_READY_WAIT: Duration = Duration::from_millis(50);

/// Idle time before TCP keep-alive probes start on upstream connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

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

thread_local! {
    /// This thread's pools, by client id.
    static POOLS: RefCell<HashMap<u64, ThreadPools>> = RefCell::new(HashMap::new());
}

/// One client's pools on one thread.
#[derive(Default)]
struct ThreadPools {
    /// Idle HTTP/1.1 connections by endpoint authority, oldest first.
    http1: HashMap<Authority, VecDeque<Idle>>,
    /// The h2c client (hyper-util's, which multiplexes requests over one connection per
    /// endpoint).
    h2c: Option<Client<Connector, Body>>,
}

/// An idle HTTP/1.1 connection.
struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

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
        self.send_http1(target, request).await
    }

    /// HTTP/1.1 on a pooled connection when one is idle, on a new one otherwise. A pooled
    /// connection found closed before the request went out is skipped, as hyper-util
    /// does; once the request was sent, a failure is the caller's to judge.
    async fn send_http1(
        &self,
        target: &Target,
        mut request: Request<Body>,
    ) -> Result<(Response<Incoming>, Option<Checkin>), SendError> {
        while let Some(mut sender) = self.checkout(&target.authority) {
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

    /// The most recently used idle connection to `authority` on this thread (its socket
    /// and buffers are the warmest), dropping closed and expired ones on the way.
    fn checkout(&self, authority: &Authority) -> Option<http1::SendRequest<Body>> {
        let idle_timeout = self.settings.pool_idle_timeout;
        POOLS
            .try_with(|pools| {
                let mut pools = pools.borrow_mut();
                let idle = pools.get_mut(&self.id)?.http1.get_mut(authority)?;
                while let Some(entry) = idle.pop_back() {
                    if !entry.sender.is_closed() && entry.since.elapsed() < idle_timeout {
                        return Some(entry.sender);
                    }
                }
                None
            })
            .ok()
            .flatten()
    }

    fn checkin(&self, target: &Target, sender: http1::SendRequest<Body>) -> Checkin {
        Checkin {
            client: self.id,
            authority: target.authority.clone(),
            max_idle: self.settings.max_idle_per_endpoint,
            idle_timeout: self.settings.pool_idle_timeout,
            sender,
        }
    }

    /// A new HTTP/1.1 connection to `target`, its task spawned on this thread's runtime.
    async fn connect(&self, target: &Target) -> Result<http1::SendRequest<Body>, SendError> {
        let timeout = self.connect_timeouts.get(&target.authority);
        let host = target.authority.host();
        // IPv6 literals come bracketed in an authority.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = target.authority.port_u16().unwrap_or(80);
        let stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(SendError::Connect(error)),
            Err(_) => {
                return Err(SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect timed out",
                )));
            }
        };
        // Small proxied requests must not wait for Nagle's delayed ACK dance.
        let _ = stream.set_nodelay(true);
        // Detects pooled connections whose peer vanished without a FIN.
        let _ = socket2::SockRef::from(&stream)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE));
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| SendError::Connect(io::Error::other(error)))?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// This thread's h2c client, built on first use.
    fn h2c_client(&self) -> Client<Connector, Body> {
        let build = || {
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            http.set_keepalive(Some(TCP_KEEPALIVE));
            let connector = Connector {
                http,
                timeouts: self.connect_timeouts.clone(),
            };
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(self.settings.pool_idle_timeout)
                .pool_max_idle_per_host(self.settings.max_idle_per_endpoint)
                .http2_only(true)
                // Large streamed bodies need more than the 64 KiB default window.
                .http2_adaptive_window(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .http2_keep_alive_timeout(Duration::from_secs(10))
                .build(connector)
        };
        POOLS
            .try_with(|pools| {
                pools
                    .borrow_mut()
                    .entry(self.id)
                    .or_default()
                    .h2c
                    .get_or_insert_with(build)
                    .clone()
            })
            // Only while this thread is exiting: a client of its own then.
            .unwrap_or_else(|_| build())
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

/// A pooled HTTP/1.1 connection lent to one exchange. [`Checkin::release`] returns it to
/// the pool of the thread that calls it; dropping it instead closes the connection
/// (its response was not read to the end, or it was upgraded).
pub(crate) struct Checkin {
    client: u64,
    authority: Authority,
    max_idle: usize,
    idle_timeout: Duration,
    sender: http1::SendRequest<Body>,
}

impl Checkin {
    pub(crate) fn release(self) {
        if self.sender.is_closed() || self.max_idle == 0 {
            return;
        }
        let Self {
            client,
            authority,
            max_idle,
            idle_timeout,
            sender,
        } = self;
        let _ = POOLS.try_with(|pools| {
            let mut pools = pools.borrow_mut();
            let idle = pools
                .entry(client)
                .or_default()
                .http1
                .entry(authority)
                .or_default();
            // The oldest connections are at the front: expired ones and those beyond
            // the bound go first.
            while idle
                .front()
                .is_some_and(|e| e.since.elapsed() >= idle_timeout || idle.len() >= max_idle)
            {
                idle.pop_front();
            }
            idle.push_back(Idle {
                sender,
                since: Instant::now(),
            });
        });
    }
}

impl fmt::Debug for Checkin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkin")
            .field("authority", &self.authority)
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

/// How an endpoint is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    H2c,
}

/// One endpoint's address, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The endpoint as written (`http://host:port/base`), for logs and outcomes; made
    /// once, cloned per request without copying.
    label: Arc<str>,
    protocol: Protocol,
    authority: Authority,
    /// The endpoint's path without a trailing slash; empty for none.
    base_path: String,
    host: HeaderValue,
}

impl Target {
    pub(crate) fn parse(uri: &Uri) -> Result<Self, UpstreamConfigError> {
        let endpoint = uri.to_string();
        let protocol = match uri.scheme_str() {
            Some("http") => Protocol::Http1,
            Some("h2c") => Protocol::H2c,
            _ => return Err(UpstreamConfigError::UnsupportedScheme { endpoint }),
        };
        let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()).cloned() else {
            return Err(UpstreamConfigError::MissingAuthority { endpoint });
        };
        if uri.query().is_some() {
            return Err(UpstreamConfigError::EndpointQuery { endpoint });
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| UpstreamConfigError::MissingAuthority { endpoint })?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let scheme = match protocol {
            Protocol::Http1 => "http",
            Protocol::H2c => "h2c",
        };
        Ok(Self {
            label: format!("{scheme}://{authority}{base_path}").into(),
            protocol,
            authority,
            base_path,
            host,
        })
    }

    /// The endpoint as written, shared.
    pub(crate) fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The origin-form URI (`/path?query`) of `uri` on this endpoint, for HTTP/1.1;
    /// `None` when `uri` already is that (no base path, origin form), which spares a
    /// copy on the common path.
    fn origin_form(&self, uri: &Uri) -> Result<Option<Uri>, http::Error> {
        let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
        // `OPTIONS *` and other non-origin forms have no meaning under a base path.
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            "/"
        };
        if self.base_path.is_empty() {
            if uri.scheme().is_none() && uri.authority().is_none() && uri.path().starts_with('/') {
                return Ok(None);
            }
            return Uri::builder()
                .path_and_query(path_and_query)
                .build()
                .map(Some);
        }
        Uri::builder()
            .path_and_query(format!("{}{path_and_query}", self.base_path))
            .build()
            .map(Some)
    }

    /// The absolute `http://` URI of `path_and_query` on this endpoint.
    fn uri_for(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        // `OPTIONS *` and other non-origin forms have no meaning under a base path.
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            "/"
        };
        let builder = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone());
        if self.base_path.is_empty() {
            builder.path_and_query(path_and_query).build()
        } else {
            builder
                .path_and_query(format!("{}{path_and_query}", self.base_path))
                .build()
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// Connect timeouts by endpoint authority. The client is shared, so the timeout of the
/// upstream at hand cannot be a connector setting; the connector looks it up instead.
#[derive(Debug, Clone, Default)]
struct ConnectTimeouts(Arc<RwLock<HashMap<String, Duration>>>);

impl ConnectTimeouts {
    fn get(&self, authority: &Authority) -> Duration {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(authority.as_str())
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }
}

/// hyper-util's TCP connector with a per-authority connect timeout.
#[derive(Debug, Clone)]
struct Connector {
    http: HttpConnector,
    timeouts: ConnectTimeouts,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = uri
            .authority()
            .map_or(DEFAULT_CONNECT_TIMEOUT, |authority| {
                self.timeouts.get(authority)
            });
        let connecting = self.http.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(
                    Box::new(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                        as BoxError,
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Result<Target, UpstreamConfigError> {
        Target::parse(&uri.parse().expect("uri"))
    }

    #[test]
    fn request_paths_are_appended_to_the_endpoint_base_path() {
        let t = target("http://users:8080/api/").expect("valid");
        assert_eq!(
            t.uri_for("/v1/me?x=1").expect("uri").to_string(),
            "http://users:8080/api/v1/me?x=1"
        );
        let t = target("h2c://users:8080").expect("valid");
        assert_eq!(
            t.uri_for("/").expect("uri").to_string(),
            "http://users:8080/"
        );
        assert_eq!(t.to_string(), "h2c://users:8080");
    }

    #[test]
    fn http1_requests_go_out_in_origin_form_under_the_base_path() {
        let origin = |endpoint: &str, uri: &str| {
            target(endpoint)
                .expect("valid")
                .origin_form(&uri.parse().expect("uri"))
                .expect("origin form")
                .map(|uri| uri.to_string())
        };
        // Already origin form without a base path: sent as is, nothing rebuilt.
        assert_eq!(origin("http://users:8080", "/v1/me?x=1"), None);
        // Absolute form from the client is never passed on.
        assert_eq!(
            origin("http://users:8080", "http://evil.example/v1/me?x=1").as_deref(),
            Some("/v1/me?x=1")
        );
        assert_eq!(
            origin("http://users:8080/api/", "/v1/me?x=1").as_deref(),
            Some("/api/v1/me?x=1")
        );
        assert_eq!(origin("http://users:8080", "*").as_deref(), Some("/"));
    }

    #[test]
    fn endpoints_must_be_http_or_h2c_with_a_host_and_no_query() {
        assert!(matches!(
            target("https://users:8443"),
            Err(UpstreamConfigError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            target("/relative"),
            Err(UpstreamConfigError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            target("http://users/?a=b"),
            Err(UpstreamConfigError::EndpointQuery { .. })
        ));
    }
}
