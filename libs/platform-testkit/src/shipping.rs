//! What every log-shipping test does around the service under test: install the
//! shipping layer for its thread, find the shipped access log, check the metrics.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use service_kit::log_shipping::{Shipper, TokenSource};
use service_kit::{CancellationToken, Listeners, LogShippingArgs};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::{Endpoints, Logging, serve_on_loopback};

/// How long shipped records may take to be queryable: generous, as the machine running
/// the tests is shared.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Installs, for this thread while the guard lives, what `init_with_shipping_token`
/// installs globally (the test binary's global subscriber is taken): records at `info`
/// and above shipped to `shipping.log_endpoint` as `service`, with `token`.
pub fn ship_logs_on_this_thread(
    shipping: &LogShippingArgs,
    service: &str,
    token: Arc<dyn TokenSource>,
) -> (Shipper, DefaultGuard) {
    let (layer, shipper) = service_kit::telemetry::shipping_layer(shipping, service, Some(token))
        .expect("--log-endpoint starts shipping");
    let guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(layer.with_filter(LevelFilter::INFO)),
    );
    (shipper, guard)
}

/// Serves the service under test as its `main` does with log shipping: `run` (its
/// `run_shipping_logs`) with `config` and `shipper` on loopback listeners, until
/// `shutdown`; waits until it is ready and returns its base URLs.
pub async fn serve_shipping_logs<C, F, Fut>(
    run: F,
    config: C,
    shutdown: &CancellationToken,
    shipper: &Shipper,
) -> Endpoints
where
    F: FnOnce(C, Listeners, CancellationToken, Option<Shipper>) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    serve_on_loopback(|listeners| run(config, listeners, shutdown.clone(), Some(shipper.clone())))
        .await
}

/// The `request finished` record `service` shipped for `request_id`, read from `logging`
/// with `reader` once it arrives; panics if it never does.
pub async fn access_log(logging: &Logging, reader: &str, service: &str, request_id: &str) -> Value {
    let http = reqwest::Client::new();
    let query = format!(
        "{}/v1/records?service={service}&request_id={request_id}",
        logging.base
    );
    // Waits for the access log line itself: a record the handler logged earlier can be
    // shipped in an earlier batch than the line written when the request finished.
    testkit::eventually(ARRIVAL_TIMEOUT, "the request's access log record", || {
        let (http, query) = (&http, &query);
        async move {
            let page: Value = http
                .get(query)
                .bearer_auth(reader)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            page["records"]
                .as_array()?
                .iter()
                .find(|r| r["body"] == "request finished")
                .cloned()
        }
    })
    .await
}

/// Asserts the shipper's counters are in the service's metrics at `admin`.
pub async fn assert_shipping_metrics(admin: &str) {
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for counter in [
        "tessera_log_shipping_shipped_total",
        "tessera_log_shipping_dropped_total",
    ] {
        assert!(metrics.contains(counter), "{counter} in {metrics}");
    }
}
