//! The connection pools every upstream shares: keep-alive HTTP/1.1 for `http://`
//! endpoints and HTTP/2 with prior knowledge for `h2c://` endpoints, one set per thread,
//! with each endpoint's connect timeout. `h1/` is the HTTP/1.1 client of the data
//! path, `pool.rs` its per-thread pool, `connect.rs` how connections are made (hyper's
//! for upgrades and h2c), `target.rs` the parsed endpoint addresses.

mod connect;
mod h1;
mod pool;
mod target;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, Version, header, request};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

pub(crate) use target::Target;

use super::forward::is_idempotent;
use super::headers::Forwarding;
use super::relayed::RelayedHeaders;
use connect::ConnectTimeouts;
use h1::{Connection, FirstByteTimeout, RequestHead};
use target::Protocol;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
/// connections and its own h2c client, so a request and the upstream connection serving
/// it never wake another thread. HTTP/1.1 is spoken by `h1/` on the request's own task
/// (no connection task, channel or request copy per attempt) over this small pool,
/// instead of hyper-util's pooled client, whose shared pool and background tasks cost
/// more than the forwarding itself.
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

    /// Sends the request made of `outgoing` and `body` to `target`. Plain HTTP/1.1 goes
    /// out on this thread's pool with `h1/`, which only borrows the request's parts;
    /// upgrades and h2c go through hyper ([`UpstreamClient::send_with_hyper`]).
    pub(crate) async fn send(
        &self,
        target: &Target,
        outgoing: Outgoing<'_>,
        body: Body,
        now: Instant,
        give_up: Instant,
    ) -> Result<Answered, SendError> {
        if target.protocol != Protocol::Http1 || outgoing.upgrade {
            // Boxed: the common path's future stays small (it is moved into a box per
            // request; bench/README.md, gateway, session 6).
            let sending = Box::pin(self.send_with_hyper(target, outgoing, body));
            let response = tokio::time::timeout_at(give_up.into(), sending)
                .await
                .map_err(|_| SendError::TimedOut)??;
            return Ok(Answered {
                response,
                relayed: None,
            });
        }
        let head = RequestHead {
            method: &outgoing.parts.method,
            uri: &outgoing.parts.uri,
            headers: &outgoing.parts.headers,
            forwarding: outgoing.forwarding,
        };
        let pooled = self.checkout(target, now);
        let reused = pooled.is_some();
        // Sent again on a new connection if a pooled one fails before a byte of answer
        // came back: the upstream closed it as the request went out (a keep-alive
        // timeout racing the request). Only idempotent requests without a body, which
        // are sent again as they are; others fail as they would on a fresh connection.
        let resendable = body.is_end_stream() && is_idempotent(head.method);
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect_http1(target, give_up).await?,
        };
        let failed = match conn
            .send(target, head, body, self.checkin(target), give_up)
            .await
        {
            Ok(answered) => return Ok(Answered::http1(answered)),
            Err(failed) => failed,
        };
        // A timeout is not resent: the attempt's time is up.
        if FirstByteTimeout::is(&failed.error) || !(reused && resendable && failed.unanswered) {
            return Err(SendError::exchange(failed.error));
        }
        tracing::debug!(endpoint = %target, error = %failed.error, "pooled connection closed under the request; sending it on a new one");
        let conn = self.connect_http1(target, give_up).await?;
        let answered = conn
            .send(target, head, Body::empty(), self.checkin(target), give_up)
            .await
            .map_err(|failed| SendError::exchange(failed.error))?;
        Ok(Answered::http1(answered))
    }

    /// A new HTTP/1.1 connection to `target`, given up at `give_up` (a timer of its own:
    /// the connection's first-byte timer comes with it; boxed where it is made: rare,
    /// and its future is large).
    async fn connect_http1(
        &self,
        target: &Target,
        give_up: Instant,
    ) -> Result<Box<Connection>, SendError> {
        let connecting = Box::pin(self.connect(target));
        let stream = tokio::time::timeout_at(give_up.into(), connecting)
            .await
            .map_err(|_| SendError::TimedOut)??;
        Ok(Box::new(Connection::new(stream)))
    }

    /// Upgrades over hyper's HTTP/1.1 (`Upgrade` does not exist in HTTP/2, RFC 8441's
    /// extended CONNECT is not supported, and h2c servers built on hyper's auto builder
    /// speak both), h2c over hyper-util's client. Both consume a request: they get a
    /// copy of the headers when the caller may send the parts again, and the headers
    /// themselves otherwise.
    async fn send_with_hyper(
        &self,
        target: &Target,
        outgoing: Outgoing<'_>,
        body: Body,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let Outgoing {
            parts,
            forwarding,
            keep_parts,
            upgrade,
        } = outgoing;
        let headers = if keep_parts {
            parts.headers.clone()
        } else {
            std::mem::take(&mut parts.headers)
        };
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.headers_mut() = headers;
        forwarding.apply(request.headers_mut());
        if upgrade {
            *request.uri_mut() = target
                .origin_form(&parts.uri)?
                .unwrap_or_else(|| parts.uri.clone());
            request
                .headers_mut()
                .insert(header::HOST, target.host.clone());
            let mut sender = self.connect_upgradable(target).await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(SendError::Http)?;
            return Ok(response.map(UpstreamBody::Hyper));
        }
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        *request.uri_mut() = target.uri_for(path_and_query)?;
        *request.version_mut() = Version::HTTP_2;
        // HTTP/2 carries the authority in `:authority`, taken from the URI.
        request.headers_mut().remove(header::HOST);
        let client = self.h2c_client();
        Ok(client.request(request).await?.map(UpstreamBody::Hyper))
    }
}

/// An upstream's answer: the response, and the lines of an HTTP/1.1 answer's head when
/// they are relayed as received instead of being in its map.
pub(crate) struct Answered {
    pub(crate) response: Response<UpstreamBody>,
    pub(crate) relayed: Option<RelayedHeaders>,
}

impl Answered {
    fn http1((response, relayed): (Response<h1::ResponseBody>, Option<RelayedHeaders>)) -> Self {
        Self {
            response: response.map(UpstreamBody::Http1),
            relayed,
        }
    }
}

/// One attempt's request besides its body.
pub(crate) struct Outgoing<'a> {
    /// The forwarded request's parts (its URI is the path and query), kept by the caller
    /// for a retry.
    pub(crate) parts: &'a mut request::Parts,
    /// The gateway's own headers.
    pub(crate) forwarding: &'a Forwarding,
    /// Whether the caller may send `parts` again.
    pub(crate) keep_parts: bool,
    /// A WebSocket upgrade (always over hyper's HTTP/1.1).
    pub(crate) upgrade: bool,
}

/// An upstream's response body: read by `h1/` on the data path, by hyper for h2c and
/// upgrades.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    Http1(h1::ResponseBody),
    Hyper(Incoming),
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Http1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Self::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http1(body) => body.is_end_stream(),
            Self::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Http1(body) => body.size_hint(),
            Self::Hyper(body) => body.size_hint(),
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
    #[error("HTTP/1.1 exchange failed: {0}")]
    Exchange(io::Error),
    /// hyper's HTTP/1.1 exchange (an upgrade) failed after the request was (maybe
    /// partly) sent.
    #[error(transparent)]
    Http(hyper::Error),
    /// The h2c client failed.
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
    /// No answer head came before the attempt's first-byte deadline.
    #[error("no answer head before the first-byte timeout")]
    TimedOut,
}

impl SendError {
    /// The error of a failed HTTP/1.1 exchange: [`SendError::TimedOut`] when it was the
    /// first-byte deadline.
    fn exchange(error: io::Error) -> Self {
        if FirstByteTimeout::is(&error) {
            Self::TimedOut
        } else {
            Self::Exchange(error)
        }
    }

    /// Whether the request never reached the endpoint (safe to retry anywhere).
    pub(crate) fn is_connect(&self) -> bool {
        match self {
            Self::Connect(_) => true,
            Self::Client(error) => error.is_connect(),
            Self::Uri(_) | Self::Exchange(_) | Self::Http(_) | Self::TimedOut => false,
        }
    }
}
