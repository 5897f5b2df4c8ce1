//! Log shipping from a service (the service kit's layer) into the real logging service:
//! records arrive with the service name, request id and trace id; when logging is down
//! the layer never blocks, drops the oldest records beyond its buffer, counts them, and
//! ships the rest once logging is up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::Value;
use service_kit::log_shipping::{self, ShippingConfig, TokenSource};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::support::{Backend, TestLogging};

/// Only this test's own events are shipped: the logging service under test runs on the
/// same thread, and its access logs must not feed back into it.
const TARGET: &str = "shipping_test";

#[derive(Debug)]
struct FixedToken(String);

impl TokenSource for FixedToken {
    fn token(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { Some(self.0.clone()) })
    }
}

fn install(config: ShippingConfig) -> (tracing::subscriber::DefaultGuard, log_shipping::Shipper) {
    let (layer, shipper) = log_shipping::start(config);
    let subscriber = tracing_subscriber::registry()
        .with(layer.with_filter(Targets::new().with_target(TARGET, tracing::Level::TRACE)));
    (tracing::subscriber::set_default(subscriber), shipper)
}

#[tokio::test]
async fn records_logged_in_a_request_arrive_with_service_request_and_trace_ids() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let mut config = ShippingConfig::new(app.url("/v1/logs"), "profile");
    config.interval = Duration::from_millis(100);
    config.token = Some(Arc::new(FixedToken(app.service_token.clone())));
    let (_guard, shipper) = install(config);

    let span = tracing::info_span!(
        target: TARGET,
        "request",
        request_id = "req-shipped",
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
        span_id = "00f067aa0ba902b7",
    );
    span.in_scope(|| {
        tracing::info!(target: TARGET, user = 7, "profile created");
        tracing::warn!(target: TARGET, "welcome email queued late");
    });
    tracing::debug!(target: TARGET, "outside any request");

    let page: Value = testkit::eventually(Duration::from_secs(15), "3 shipped records", || async {
        let page = app.records("service=profile").await;
        (page["records"].as_array().map(Vec::len) == Some(3)).then_some(page)
    })
    .await;
    let records = page["records"].as_array().expect("records");
    let created = records
        .iter()
        .find(|r| r["body"] == "profile created")
        .expect("shipped");
    assert_eq!(created["request_id"], "req-shipped");
    assert_eq!(created["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(created["span_id"], "00f067aa0ba902b7");
    assert_eq!(created["severity_text"], "INFO");
    assert_eq!(created["attributes"]["user"], 7);
    let late = records
        .iter()
        .find(|r| r["body"] == "welcome email queued late")
        .expect("shipped");
    assert_eq!(late["severity_number"], 13);
    let outside = records
        .iter()
        .find(|r| r["body"] == "outside any request")
        .expect("shipped");
    assert!(outside["request_id"].is_null());
    assert_eq!(shipper.shipped(), 3);
    assert_eq!(shipper.dropped(), 0);
}

#[tokio::test]
async fn while_logging_is_down_the_oldest_records_are_dropped_and_counted_and_the_rest_arrive_later()
 {
    // A port nothing listens on yet; logging will start on it later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut config = ShippingConfig::new(format!("http://{port}/v1/logs"), "notification");
    config.capacity = 16;
    config.batch = 16;
    config.interval = Duration::from_millis(50);
    let (_guard, shipper) = install(config);

    let started = Instant::now();
    for i in 0..100 {
        tracing::info!(target: TARGET, "attempt {i:03}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "logging never waits on shipping"
    );
    // Sixteen are buffered (or in flight); the first are dropped as newer ones arrive.
    assert!(shipper.dropped() >= 84, "dropped {}", shipper.dropped());

    let app = TestLogging::start_on(
        Backend::Sqlite,
        &["--insecure-disable-auth"],
        None,
        Some(port),
    )
    .await;
    let bodies = testkit::eventually(Duration::from_secs(40), "the buffered records", || async {
        let bodies = app.bodies("service=notification").await;
        (bodies.len() >= 16).then_some(bodies)
    })
    .await;
    assert!(
        bodies.contains(&"attempt 099".to_owned()),
        "the newest survive: {bodies:?}"
    );
    assert!(
        !bodies.contains(&"attempt 000".to_owned()),
        "the oldest were dropped"
    );
    assert_eq!(bodies.len() as u64 + shipper.dropped(), 100);
}
