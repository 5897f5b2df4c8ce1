//! The gateway's own counters, beside the kit's HTTP metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// Counters of refusals and degraded operation.
#[derive(Debug, Clone, Default)]
pub struct GatewayMetrics {
    rate_limited: Family<RouteLabels, Counter>,
    auth_rejected: Family<ReasonLabels, Counter>,
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
            "Requests refused by authentication, by reason",
            this.auth_rejected.clone(),
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

    pub(crate) fn auth_rejected(&self, reason: &str) {
        self.auth_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(crate) fn limiter_error(&self) {
        self.limiter_errors.inc();
    }
}
