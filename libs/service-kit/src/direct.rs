//! What the kit's public layer stack does to a request, as plain functions for a server
//! that serves hyper directly instead of through [`crate::Service::public_router`]: the
//! gateway's data path, where axum's router and the six `from_fn`/tower layers (a boxed
//! future and a cloned boxed service each, per request) cost more than the gateway's own
//! work (bench/README.md, gateway).
//!
//! A direct server must keep what the layers guarantee: the HTTP metrics
//! ([`HttpRecorder`]), uniform problem+json errors ([`problem_for_bare_errors`]), a
//! request id and trace context per request, one access line, panic containment, the
//! request timeout and the body limit. The last four are the server's own code.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{Method, header};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{Metrics, method_label};
use crate::problem::{PROBLEM_JSON, Problem};

/// Longest plain-text error body turned into a problem's `detail`; longer ones get the
/// generic detail.
const MAX_TEXT_DETAIL: usize = 4096;

/// Records requests in a service's HTTP series (`http_server_requests`,
/// `http_server_request_duration_seconds`, `http_server_in_flight_requests`) exactly as
/// the kit's metrics layer labels them. Cheap to clone.
///
/// Each thread keeps the series it recorded into: the registry's lookup takes a lock and
/// hashes and clones the labels (shared reference counts) on every request, which costs
/// more than the counting when several threads serve requests.
#[derive(Debug, Clone)]
pub struct HttpRecorder {
    metrics: Metrics,
    /// Tells recorders apart in the per-thread caches (ids are never reused).
    id: u64,
}

/// Source of [`HttpRecorder`] ids.
static NEXT_RECORDER: AtomicU64 = AtomicU64::new(0);

/// Series cached per thread before the cache is emptied: far above the routes × methods
/// × statuses of a real configuration, and a bound on memory if routes keep changing.
const MAX_CACHED_SERIES: usize = 4096;

/// Recorder id, method label, status and a hash of the route label.
type SeriesKey = (u64, &'static str, u16, u64);

/// The route label (to confirm a hash hit) and the series' handles.
type Series = (Arc<str>, Histogram, Counter);

thread_local! {
    static SERIES: RefCell<HashMap<SeriesKey, Series, BuildHasherDefault<KeyHasher>>> =
        RefCell::new(HashMap::default());
}

/// `FxHash`-style hashing for the series cache: its keys are a handful of integers and a
/// method name, made by the server itself (not attacker-chosen), and `SipHash` cost a few
/// hundred instructions per request (bench/README.md, gateway, session 5).
#[derive(Default)]
struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0_u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

impl HttpRecorder {
    /// A recorder writing into `metrics`' HTTP series.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            metrics: metrics.clone(),
            id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Counts a request as in flight until the returned guard is dropped (also when the
    /// request future is cancelled because the client went away).
    pub fn in_flight(&self) -> InFlight {
        let gauge = self.metrics.in_flight_gauge();
        gauge.inc();
        InFlight(gauge)
    }

    /// Records one answered request: `route` is the label (a route name or template,
    /// never a raw path), `elapsed` the time to the response head.
    pub fn record(&self, method: &Method, route: &Arc<str>, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let key = (self.id, method, status, fnv1a(route.as_bytes()));
        let seconds = elapsed.as_secs_f64();
        let cached = SERIES.try_with(|series| {
            let mut series = series.borrow_mut();
            if let Some((label, histogram, counter)) = series.get(&key)
                && **label == **route
            {
                histogram.observe(seconds);
                counter.inc();
                return;
            }
            let (histogram, counter) = self.metrics.http_series(method, route, status);
            histogram.observe(seconds);
            counter.inc();
            if series.len() >= MAX_CACHED_SERIES {
                series.clear();
            }
            series.insert(key, (Arc::clone(route), histogram, counter));
        });
        if cached.is_err() {
            // Only while this thread is exiting.
            let (histogram, counter) = self.metrics.http_series(method, route, status);
            histogram.observe(seconds);
            counter.inc();
        }
    }
}

/// FNV-1a: route labels are short, and a collision only costs a lookup in the registry.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A request counted in `http_server_in_flight_requests` until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The answer to a handler that panicked: logged with its message, answered with the
/// opaque 500 problem (the kit's panic layer and the gateway's data path).
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature CatchPanicLayer requires"
)]
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic payload)");
    tracing::error!(panic = message, "handler panicked");
    Problem::internal().into_response()
}

/// The kit's error-shape rule for a response the server produced: every 4xx/5xx leaves
/// as problem+json. Bodiless errors get the generic problem for their status, plain-text
/// 4xx keep their text as `detail`, other 4xx bodies are kept, and 5xx bodies that are
/// not problems are replaced by the opaque problem, so a server error never leaks
/// details. Successful responses are returned untouched without any work.
pub async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let content_type = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type == PROBLEM_JSON {
        return response;
    }
    let is_text = content_type.starts_with("text/plain");
    if status.is_client_error() && !content_type.is_empty() && !is_text {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut problem = Problem::for_status(status);
    if status.is_client_error()
        && is_text
        && let Ok(text) = axum::body::to_bytes(body, MAX_TEXT_DETAIL).await
    {
        let text = String::from_utf8_lossy(&text).trim().to_owned();
        if !text.is_empty() {
            problem = problem.detail(text);
        }
    }
    let mut problem = problem.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.extend(problem.headers_mut().drain());
    Response::from_parts(parts, problem.into_body())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::StatusCode;

    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn recorded_requests_appear_in_the_kit_s_http_series_with_route_labels() {
        let metrics = Metrics::new("test");
        let recorder = HttpRecorder::new(&metrics);
        let route: Arc<str> = Arc::from("public");
        for _ in 0..3 {
            recorder.record(&Method::GET, &route, 200, Duration::from_millis(2));
        }
        // The same name in another allocation (a reloaded route) counts in the same series.
        recorder.record(
            &Method::GET,
            &Arc::from("public"),
            200,
            Duration::from_millis(2),
        );
        recorder.record(&Method::POST, &route, 502, Duration::from_millis(2));
        let text = metrics.render();
        assert!(
            text.contains(
                r#"tessera_http_server_requests_total{service="test",method="GET",route="public",status="200"} 4"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"method="POST",route="public",status="502""#),
            "{text}"
        );
        assert!(
            text.contains(r#"tessera_http_server_request_duration_seconds_count{service="test",method="GET",route="public"} 4"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_server_error_body_is_replaced_by_the_opaque_problem() {
        let response = Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header(header::CONTENT_TYPE, "text/html")
            .body(Body::from("<pre>stack trace</pre>"))
            .expect("response");
        let mapped = problem_for_bare_errors(response).await;
        assert_eq!(mapped.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = body_json(mapped).await;
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("stack trace"));
    }

    #[tokio::test]
    async fn a_plain_text_client_error_keeps_its_text_as_detail_and_success_is_untouched() {
        let response = Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("missing field `name`"))
            .expect("response");
        let body = body_json(problem_for_bare_errors(response).await).await;
        assert_eq!(body["detail"], "missing field `name`");

        let ok = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("fine"))
            .expect("response");
        let ok = problem_for_bare_errors(ok).await;
        assert_eq!(ok.headers()[header::CONTENT_TYPE], "text/plain");
    }
}
