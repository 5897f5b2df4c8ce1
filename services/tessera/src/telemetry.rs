//! The all-in-one process's log subscriber: the `tracing` subscriber is global, so one
//! stdout layer and one shipping layer serve every service in the process.
//!
//! Logging's own ingestion requests are left out of both: each shipped batch is a
//! `POST /v1/logs`, whose access line would be shipped in the next batch, and so on
//! forever (thousands of records a second with nothing happening).

use std::fmt::Debug;

use service_kit::log_shipping::Shipper;
use service_kit::telemetry::{log_filter, stdout_layer};
use service_kit::{LogShippingArgs, TelemetryArgs};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The route of logging's OTLP ingestion, as the request span names it.
const INGEST_PATH: &str = "/v1/logs";

/// Marks a request span that is an ingestion request.
struct Ingestion;

/// Finds `path` in a request span's fields.
#[derive(Default)]
struct PathVisitor(Option<String>);

impl Visit for PathVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "path" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "path" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// Marks the `request` spans of ingestion requests.
struct MarkIngestion;

impl<S> Layer<S> for MarkIngestion
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "request" {
            return;
        }
        let mut path = PathVisitor::default();
        attrs.record(&mut path);
        if path.0.as_deref() == Some(INGEST_PATH)
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Ingestion);
        }
    }
}

/// Whether a record belongs outside every ingestion request.
fn outside_ingestion<S>(metadata: &Metadata<'_>, cx: &Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if metadata.is_span() {
        return true;
    }
    cx.lookup_current().is_none_or(|span| {
        span.scope()
            .all(|s| s.extensions().get::<Ingestion>().is_none())
    })
}

/// Installs the global subscriber: stdout in `args`'s format, and every record shipped
/// to `endpoint` as service `tessera` (with its request and trace ids), both filtered by
/// `args.log_filter`. Call inside the Tokio runtime.
pub fn init(args: &TelemetryArgs, endpoint: String) -> anyhow::Result<Option<Shipper>> {
    let shipping = LogShippingArgs {
        log_endpoint: Some(endpoint),
        // The flag's default (`Default` would give 0, a buffer of one record).
        log_buffer_records: 8192,
    };
    let Some((layer, shipper)) = service_kit::telemetry::shipping_layer(&shipping, "tessera", None)
    else {
        return Ok(None);
    };
    // Err only means a subscriber is already installed (never in the binary).
    let _ = tracing_subscriber::registry()
        .with(MarkIngestion)
        .with(
            stdout_layer(args.log_format)
                .with_filter(dynamic_filter_fn(outside_ingestion))
                .with_filter(log_filter(args)?),
        )
        .with(
            layer
                .with_filter(dynamic_filter_fn(outside_ingestion))
                .with_filter(log_filter(args)?),
        )
        .try_init();
    Ok(Some(shipper))
}
