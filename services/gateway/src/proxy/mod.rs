//! Upstreams: forwarding a routed request to one of an upstream's endpoints, with pooled
//! HTTP/1.1 and h2c connections, load balancing, passive outlier ejection, a circuit
//! breaker, budgeted retries, timeouts and WebSocket pass-through (issue #4).
//!
//! One [`UpstreamClient`] (the connection pools) is shared by every [`Upstream`]; an
//! `Upstream` is one route's endpoint set with its resilience state. The caller has
//! already matched the route, authenticated the request and rewritten its path; it calls
//! [`Upstream::forward`], which always answers: upstream failures become
//! `application/problem+json` responses with a stable `code` (`upstream_unavailable` 502,
//! `circuit_open` 503, `upstream_timeout` 504) and never carry the upstream's error text.
//!
//! Resilience decisions, in the order a request meets them:
//! 1. the breaker (`breaker.rs`) may refuse at once with 503 and `Retry-After`;
//! 2. the balancer (`balance.rs`) picks a non-ejected endpoint (`outlier.rs`);
//! 3. each attempt is bounded by the first-byte timeout, the whole exchange (body
//!    included) by the total timeout;
//! 4. connect errors and 502/503 answers to idempotent requests are retried on another
//!    endpoint while the retry budget (`budget.rs`) allows.
//!
//! What the caller provides: a request whose extensions still hold hyper's `OnUpgrade`
//! (axum passes it through) for WebSocket pass-through; its body limit as a
//! `http_body_util::Limited` (or tower-http's limit layer), whose error becomes 413
//! `body_too_large` here instead of a 502; and a configuration checked with
//! [`UpstreamConfig::validate`] at load time.

mod balance;
mod body;
mod breaker;
mod budget;
mod client;
mod forward;
pub(crate) mod headers;
pub(crate) mod ids;
mod outcome;
mod outlier;
pub(crate) mod relayed;
mod websocket;
mod window;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Uri};

pub use breaker::BreakerState;
pub use client::{ClientSettings, UpstreamClient};
pub use ids::{MadeId, RequestId, RequestIds, TraceParent};
pub use outcome::UpstreamOutcome;

pub(crate) use forward::Forwarded;

use balance::{Balancer, Endpoint};
use breaker::Breaker;
use budget::RetryBudget;
use client::Target;

/// How an upstream spreads requests over its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The endpoint with the fewest requests in flight; ties go round robin.
    LeastOutstanding,
}

/// Time limits of one forwarded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// Establishing a TCP connection to an endpoint.
    pub connect: Duration,
    /// From sending an attempt (connect and request upload included) to the response
    /// headers.
    pub first_byte: Duration,
    /// The whole exchange, retries and the streamed response body included.
    pub total: Duration,
}

impl Default for Timeouts {
    /// Connect 2 s (a healthy endpoint on the same network connects in milliseconds),
    /// first byte 15 s (Envoy's default route timeout), total 60 s (room for downloads).
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(15),
            total: Duration::from_secs(60),
        }
    }
}

/// When a failed attempt is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Extra attempts after the first; 0 disables retries.
    pub attempts: u32,
    /// Retries may add at most this fraction of the requests seen over the last 10 s
    /// (plus a small floor per second), so retries cannot multiply an outage's load.
    pub budget_ratio: f64,
}

impl Default for RetryPolicy {
    /// One retry, budget 20% (Linkerd's default retry budget).
    fn default() -> Self {
        Self {
            attempts: 1,
            budget_ratio: 0.2,
        }
    }
}

/// One upstream: its endpoints and resilience settings.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// `http://host:port[/base]` (HTTP/1.1) or `h2c://host:port[/base]` (HTTP/2 over
    /// cleartext with prior knowledge). The base path is prefixed to every request path.
    pub endpoints: Vec<Uri>,
    /// How requests are spread over the endpoints.
    pub balance: Balance,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Retries.
    pub retry: RetryPolicy,
    /// Consecutive failures (connect error, timeout, 502/503/504) that eject an endpoint;
    /// 0 disables ejection.
    pub eject_after_failures: u32,
    /// How long an ejected endpoint receives no traffic.
    pub ejection: Duration,
    /// The breaker opens when failures / requests over the last 10 s reach this ratio;
    /// a value above 1 disables the breaker.
    pub breaker_failure_ratio: f64,
    /// ...and at least this many requests were seen in that window.
    pub breaker_min_requests: u32,
    /// How long an open breaker refuses requests before letting one probe through.
    pub breaker_open_for: Duration,
}

impl UpstreamConfig {
    /// A configuration for these endpoints with the defaults: round robin, default
    /// timeouts and retries, ejection after 5 consecutive failures for 30 s (Envoy's
    /// outlier-detection defaults), breaker at 50% failures over at least 20 requests,
    /// open for 10 s.
    pub fn new(endpoints: Vec<Uri>) -> Self {
        Self {
            endpoints,
            balance: Balance::default(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            eject_after_failures: 5,
            ejection: Duration::from_secs(30),
            breaker_failure_ratio: 0.5,
            breaker_min_requests: 20,
            breaker_open_for: Duration::from_secs(10),
        }
    }

    /// Checks what [`Upstream::new`] relies on; call it when loading configuration so a
    /// bad endpoint is refused with one clear line instead of answering 502 later.
    pub fn validate(&self) -> Result<(), UpstreamConfigError> {
        if self.endpoints.is_empty() {
            return Err(UpstreamConfigError::NoEndpoints);
        }
        for endpoint in &self.endpoints {
            Target::parse(endpoint)?;
        }
        let Timeouts {
            connect,
            first_byte,
            total,
        } = &self.timeouts;
        for (setting, value) in [
            ("connect", connect),
            ("first_byte", first_byte),
            ("total", total),
        ] {
            if value.is_zero() {
                return Err(UpstreamConfigError::ZeroTimeout { setting });
            }
        }
        for (setting, value) in [
            ("budget_ratio", self.retry.budget_ratio),
            ("breaker_failure_ratio", self.breaker_failure_ratio),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(UpstreamConfigError::InvalidRatio { setting });
            }
        }
        Ok(())
    }
}

/// Why an [`UpstreamConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamConfigError {
    /// The endpoint list is empty.
    #[error("an upstream needs at least one endpoint")]
    NoEndpoints,
    /// The endpoint's scheme is neither `http` nor `h2c`.
    #[error("upstream endpoint {endpoint} must start with http:// or h2c://")]
    UnsupportedScheme {
        /// The endpoint as configured.
        endpoint: String,
    },
    /// The endpoint has no host.
    #[error("upstream endpoint {endpoint} has no host")]
    MissingAuthority {
        /// The endpoint as configured.
        endpoint: String,
    },
    /// The endpoint carries a query string, which cannot be combined with request paths.
    #[error("upstream endpoint {endpoint} must not have a query string")]
    EndpointQuery {
        /// The endpoint as configured.
        endpoint: String,
    },
    /// A timeout is zero.
    #[error("upstream timeout {setting} must be greater than zero")]
    ZeroTimeout {
        /// The timeout's name.
        setting: &'static str,
    },
    /// A ratio is negative or not a number.
    #[error("upstream setting {setting} must be a non-negative number")]
    InvalidRatio {
        /// The setting's name.
        setting: &'static str,
    },
}

/// What the gateway knows about the client, for the `X-Forwarded-*` and propagation
/// headers.
#[derive(Debug, Clone)]
pub struct ForwardContext {
    /// The address of the peer that connected to the gateway.
    pub client_addr: IpAddr,
    /// The `X-Forwarded-For` chain received from a trusted proxy (already validated by
    /// the caller), or `None` when the peer is not trusted; the client address is
    /// appended to it.
    pub forwarded_for: Option<String>,
    /// `"http"` or `"https"`, as the client sees the gateway.
    pub proto: &'static str,
    /// The host the client asked for (lowercase, without port), sent as
    /// `X-Forwarded-Host`.
    pub host: Option<HeaderValue>,
    /// The request id and trace context, sent as `X-Request-Id` and `traceparent`.
    pub ids: RequestIds,
    /// When the request reached the gateway: the total timeout, the breaker and the
    /// retry budget count from it (forwarding reads no clock of its own before the
    /// first attempt).
    pub started: Instant,
}

/// One upstream's endpoints and resilience state; share it as `Arc<Upstream>` and build
/// a new one when the routes change (state starts fresh).
pub struct Upstream {
    config: UpstreamConfig,
    client: UpstreamClient,
    endpoints: Vec<Arc<Endpoint>>,
    balancer: Balancer,
    breaker: Breaker,
    budget: RetryBudget,
}

impl Upstream {
    /// The upstream for `config`, using `client`'s connection pools. Endpoints that do not
    /// pass [`UpstreamConfig::validate`] are logged and left out.
    pub fn new(config: UpstreamConfig, client: UpstreamClient) -> Arc<Self> {
        let now = Instant::now();
        let endpoints = config
            .endpoints
            .iter()
            .filter_map(|uri| match Target::parse(uri) {
                Ok(target) => Some(Arc::new(Endpoint::new(target))),
                Err(error) => {
                    tracing::error!(%error, "upstream endpoint left out");
                    None
                }
            })
            .collect::<Vec<_>>();
        for endpoint in &endpoints {
            client.register_connect_timeout(endpoint.target(), config.timeouts.connect);
        }
        Arc::new(Self {
            balancer: Balancer::new(config.balance),
            breaker: Breaker::new(
                breaker::Settings {
                    failure_ratio: config.breaker_failure_ratio,
                    min_requests: config.breaker_min_requests,
                    open_for: config.breaker_open_for,
                },
                now,
            ),
            budget: RetryBudget::new(config.retry.budget_ratio, now),
            endpoints,
            client,
            config,
        })
    }

    /// The configuration this upstream was built from.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// A snapshot of the breaker and endpoints, for `/debug/routes` and metrics.
    pub fn status(&self) -> UpstreamStatus {
        let now = Instant::now();
        UpstreamStatus {
            breaker: self.breaker.state(now),
            endpoints: self
                .endpoints
                .iter()
                .map(|endpoint| EndpointStatus {
                    endpoint: endpoint.target().to_string(),
                    outstanding: endpoint.outstanding(),
                    ejected: endpoint.ejected_since(now).is_some(),
                })
                .collect(),
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The state of an upstream at one instant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamStatus {
    /// The circuit breaker.
    pub breaker: BreakerState,
    /// Each endpoint, in configuration order.
    pub endpoints: Vec<EndpointStatus>,
}

/// The state of one endpoint at one instant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointStatus {
    /// The endpoint as configured.
    pub endpoint: String,
    /// Requests in flight to it (streamed bodies and WebSocket connections included).
    pub outstanding: usize,
    /// Whether outlier detection has taken it out of rotation.
    pub ejected: bool,
}

/// `now + duration`, saturating far in the future instead of panicking on a huge
/// configured duration.
fn after(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
