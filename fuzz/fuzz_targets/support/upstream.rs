//! What the `upstream` and `upstream_reuse` targets share (included with `#[path]`: a
//! file under `fuzz_targets/` would otherwise be taken for a target of its own): the
//! gateway `Upstream` in front of the raw upstream at `addr`, and the request context.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tessera_gateway::proxy::{
    Balance, ClientSettings, ForwardContext, RequestIds, RetryPolicy, Timeouts, TraceParent,
    Upstream, UpstreamClient, UpstreamConfig,
};

/// An upstream at `addr` keeping `max_idle` idle connections, with timeouts of 1 s to
/// connect and to the first byte and `total` for the exchange, no retries, and neither
/// ejection nor the breaker: every input reaches the raw upstream.
pub(crate) fn upstream(addr: SocketAddr, max_idle: usize, total: Duration) -> Arc<Upstream> {
    let client = UpstreamClient::with_settings(&ClientSettings {
        max_idle_per_endpoint: max_idle,
        ..ClientSettings::default()
    });
    let config = UpstreamConfig {
        endpoints: vec![format!("http://{addr}").parse().expect("endpoint URI")],
        balance: Balance::RoundRobin,
        timeouts: Timeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(1),
            total,
        },
        retry: RetryPolicy {
            attempts: 0,
            budget_ratio: 0.2,
        },
        eject_after_failures: 0,
        ejection: Duration::from_secs(1),
        breaker_failure_ratio: 2.0,
        breaker_min_requests: 1,
        breaker_open_for: Duration::from_secs(1),
    };
    config.validate().expect("fixture configuration is valid");
    Upstream::new(config, client)
}

/// The context of a client request the gateway forwards.
pub(crate) fn context() -> ForwardContext {
    ForwardContext {
        client_addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        forwarded_for: None,
        proto: "http",
        host: Some(HeaderValue::from_static("api.example.com")),
        ids: RequestIds {
            request_id: HeaderValue::from_static("fuzz-request").into(),
            trace: TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01")
                .expect("valid traceparent"),
        },
        started: std::time::Instant::now(),
    }
}
