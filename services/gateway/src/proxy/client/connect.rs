//! Making upstream connections: TCP connections for the per-thread HTTP/1.1 pool
//! (`h1/` speaks on them), hyper connections for upgrades, and the h2c client, all
//! with a per-authority connect timeout.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::Uri;
use http::uri::Authority;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::pool::with_pools;
use super::{SendError, Target, UpstreamClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connect timeout for an authority no upstream registered (cannot happen through
/// [`super::Upstream`], which registers its endpoints first).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle time before TCP keep-alive probes start on upstream connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
impl UpstreamClient {
    /// A new TCP connection to `target` for HTTP/1.1, within its connect timeout.
    pub(super) async fn connect(&self, target: &Target) -> Result<TcpStream, SendError> {
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
        Ok(stream)
    }

    /// A new hyper HTTP/1.1 connection to `target` for an upgrade (WebSocket), its task
    /// spawned on this thread's runtime. Upgraded connections are never pooled.
    pub(super) async fn connect_upgradable(
        &self,
        target: &Target,
    ) -> Result<http1::SendRequest<Body>, SendError> {
        let stream = self.connect(target).await?;
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
    pub(super) fn h2c_client(&self) -> Client<Connector, Body> {
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
        with_pools(|pools| pools.of(self.id).h2c.get_or_insert_with(build).clone())
            .unwrap_or_else(build)
    }
}

/// Connect timeouts by endpoint authority. The client is shared, so the timeout of the
/// upstream at hand cannot be a connector setting; the connector looks it up instead.
#[derive(Debug, Clone, Default)]
pub(super) struct ConnectTimeouts(pub(super) Arc<RwLock<HashMap<String, Duration>>>);

impl ConnectTimeouts {
    pub(super) fn get(&self, authority: &Authority) -> Duration {
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
pub(super) struct Connector {
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
