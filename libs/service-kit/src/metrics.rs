//! Prometheus metrics: one registry per service, HTTP server metrics recorded by the kit,
//! and the `/metrics` handler on the admin listener.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client). It writes the
//! OpenMetrics text format, the successor of Prometheus' text format that every
//! Prometheus since 2.0 scrapes.

use std::sync::{Arc, LazyLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// Content type of the `/metrics` body.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label set of the per-request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    /// The route template (`/users/{id}`), never the raw path, so cardinality stays bounded.
    route: Arc<str>,
    status: u16,
}

/// Label set of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: Arc<str>,
}

/// Put on a response to label its metrics with this route name instead of the matched
/// path template (the gateway routes every path through one handler).
#[derive(Debug, Clone)]
pub struct RouteLabel(pub Arc<str>);

/// A service's metric registry plus the HTTP metrics the kit maintains.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    in_flight: Gauge,
}

impl Metrics {
    /// A registry whose metric names start with `tessera_`, labelled with the service.
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "tessera",
            [("service".into(), service.to_owned().into())].into_iter(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.5 ms .. ~8 s in 15 doublings: covers a JWT check and a slow database call.
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 15))
        });
        let in_flight = Gauge::default();
        registry.register(
            "http_server_requests",
            "HTTP requests answered",
            requests.clone(),
        );
        registry.register(
            "http_server_request_duration_seconds",
            "Time to answer an HTTP request",
            durations.clone(),
        );
        registry.register(
            "http_server_in_flight_requests",
            "HTTP requests being answered",
            in_flight.clone(),
        );
        Self {
            registry: Arc::new(RwLock::new(registry)),
            requests,
            durations,
            in_flight,
        }
    }

    /// Registers a service-specific metric; call at start-up.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// The in-flight gauge, for servers that record requests themselves
    /// ([`crate::direct::HttpRecorder`]).
    pub(crate) fn in_flight_gauge(&self) -> Gauge {
        self.in_flight.clone()
    }

    /// The latency histogram and request counter of one method, route and status, with
    /// the labels the middleware uses, for servers that record requests themselves
    /// ([`crate::direct::HttpRecorder`] keeps them per thread). The handles share the
    /// registry's values.
    pub(crate) fn http_series(
        &self,
        method: &'static str,
        route: &Arc<str>,
        status: u16,
    ) -> (Histogram, Counter) {
        let histogram = self
            .durations
            .get_or_create(&RouteLabels {
                method,
                route: Arc::clone(route),
            })
            .clone();
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                method,
                route: Arc::clone(route),
                status,
            })
            .clone();
        (histogram, counter)
    }

    /// The registry in text form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

/// Middleware recording the HTTP server metrics.
pub(crate) async fn record_http(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let in_flight = InFlight::enter(&metrics.in_flight);
    let response = next.run(request).await;
    drop(in_flight);
    // Labels are `Arc`s and static strings: recording a request allocates nothing.
    let route = match (response.extensions().get::<RouteLabel>(), matched) {
        (Some(label), _) => Arc::clone(&label.0),
        (None, Some(matched)) => Arc::from(matched.as_str()),
        (None, None) => Arc::clone(&UNMATCHED),
    };
    let status = response.status().as_u16();
    metrics
        .durations
        .get_or_create(&RouteLabels {
            method,
            route: Arc::clone(&route),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}

/// Route label of requests no route matched.
static UNMATCHED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("unmatched"));

/// The method label: the standard methods by name, anything else as `other`, so a client
/// inventing methods cannot grow the label sets without bound.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Counts a request as in flight until dropped, also when the client goes away and the
/// request future is cancelled.
struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /metrics` on the admin listener.
pub(crate) async fn handler(State(metrics): State<Metrics>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, OPENMETRICS_TEXT)],
        metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_are_labelled_by_name_and_invented_ones_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let invented = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
