//! The connection pools every upstream shares: keep-alive HTTP/1.1 for `http://`
//! endpoints and HTTP/2 with prior knowledge for `h2c://` endpoints, over one TCP
//! connector that applies each endpoint's connect timeout.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::UpstreamConfigError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connect timeout for an authority no upstream registered (cannot happen through
/// [`super::Upstream`], which registers its endpoints first).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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

/// The client shared by all upstreams; cloning shares the pools.
#[derive(Clone)]
pub struct UpstreamClient {
    http1: Client<Connector, Body>,
    h2c: Client<Connector, Body>,
    connect_timeouts: ConnectTimeouts,
    pub(crate) upgrade_idle_timeout: Duration,
}

impl UpstreamClient {
    /// A client with [`ClientSettings::default`].
    pub fn new() -> Self {
        Self::with_settings(&ClientSettings::default())
    }

    /// A client with explicit pool settings.
    pub fn with_settings(settings: &ClientSettings) -> Self {
        let connect_timeouts = ConnectTimeouts::default();
        let mut http = HttpConnector::new();
        // Small proxied requests must not wait for Nagle's delayed ACK dance.
        http.set_nodelay(true);
        // Detects pooled connections whose peer vanished without a FIN.
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = Connector {
            http,
            timeouts: connect_timeouts.clone(),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_endpoint);
        let http1 = builder.build(connector.clone());
        builder
            .http2_only(true)
            // Large streamed bodies need more than the 64 KiB default window.
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10));
        let h2c = builder.build(connector);
        Self {
            http1,
            h2c,
            connect_timeouts,
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
    pub(crate) async fn send(
        &self,
        target: &Target,
        mut request: Request<Body>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, SendError> {
        let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        *request.uri_mut() = target.uri_for(path_and_query)?;
        let http2 = target.protocol == Protocol::H2c && !upgrade;
        if http2 {
            *request.version_mut() = Version::HTTP_2;
            // HTTP/2 carries the authority in `:authority`, taken from the URI.
            request.headers_mut().remove(header::HOST);
            Ok(self.h2c.request(request).await?)
        } else {
            *request.version_mut() = Version::HTTP_11;
            request
                .headers_mut()
                .insert(header::HOST, target.host.clone());
            Ok(self.http1.request(request).await?)
        }
    }
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

/// Why an attempt got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The endpoint and the request path do not form a valid URI.
    #[error("invalid upstream URI")]
    Uri(#[from] http::Error),
    /// Connecting, sending or receiving failed.
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
}

impl SendError {
    /// Whether the request never reached the endpoint (safe to retry anywhere).
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, Self::Client(e) if e.is_connect())
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
        Ok(Self {
            protocol,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            host,
        })
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
        let scheme = match self.protocol {
            Protocol::Http1 => "http",
            Protocol::H2c => "h2c",
        };
        write!(f, "{scheme}://{}{}", self.authority, self.base_path)
    }
}

/// Connect timeouts by endpoint authority. The client is shared, so the timeout of the
/// upstream at hand cannot be a connector setting; the connector looks it up instead.
#[derive(Debug, Clone, Default)]
struct ConnectTimeouts(Arc<RwLock<HashMap<String, Duration>>>);

impl ConnectTimeouts {
    fn get(&self, uri: &Uri) -> Duration {
        uri.authority()
            .and_then(|authority| {
                self.0
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(authority.as_str())
                    .copied()
            })
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
        let timeout = self.timeouts.get(&uri);
        let connecting = self.http.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )) as BoxError),
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
