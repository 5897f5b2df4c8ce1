//! The gateway's own counters, beside the kit's HTTP metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteReasonLabels {
    route: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteErrorLabels {
    route: String,
    error: String,
}

/// Counters of refusals and degraded operation.
#[derive(Debug, Clone, Default)]
pub struct GatewayMetrics {
    rate_limited: Family<RouteLabels, Counter>,
    auth_rejected: Family<RouteReasonLabels, Counter>,
    upstream_errors: Family<RouteErrorLabels, Counter>,
    limiter_errors: Counter,
}

impl GatewayMetrics {
    /// Creates the counters and registers them.
    pub fn register(metrics: &service_kit::Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "gateway_rate_limited",
            "Requests refused with 429, by route",
            this.rate_limited.clone(),
        );
        metrics.register(
            "gateway_auth_rejected",
            "Requests refused by authentication, by route and reason",
            this.auth_rejected.clone(),
        );
        metrics.register(
            "gateway_upstream_errors",
            "Requests the gateway answered for a failed upstream, by route and problem code \
             (upstream_unavailable 502, circuit_open 503, upstream_timeout 504)",
            this.upstream_errors.clone(),
        );
        metrics.register(
            "gateway_limiter_errors",
            "Rate-limit checks that failed and were let through",
            this.limiter_errors.clone(),
        );
        this
    }

    pub(crate) fn rate_limited(&self, route: &str) {
        self.rate_limited
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .inc();
    }

    pub(crate) fn auth_rejected(&self, route: &str, reason: &str) {
        self.auth_rejected
            .get_or_create(&RouteReasonLabels {
                route: route.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(crate) fn upstream_error(&self, route: &str, error: &str) {
        self.upstream_errors
            .get_or_create(&RouteErrorLabels {
                route: route.to_owned(),
                error: error.to_owned(),
            })
            .inc();
    }

    pub(crate) fn limiter_error(&self) {
        self.limiter_errors.inc();
    }
}
