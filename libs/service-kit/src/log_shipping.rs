//! Log shipping (DESIGN.md §6): a `tracing` layer that copies every log record into a
//! bounded buffer, and a background task that sends batches to the logging service's
//! `/v1/logs` as OTLP/HTTP protobuf.
//!
//! Recording a log line never waits: the layer takes a short lock, pushes, and when the
//! buffer is full drops the oldest record and counts it. The sender retries a batch that
//! got 429/502/503/504 (or no answer) after `Retry-After` or a capped backoff, drops a
//! batch the server refused as bad (4xx), and keeps collecting meanwhile, so a service
//! keeps serving while logging is down and resumes shipping when it is back. Each record
//! carries the service name (resource `service.name`) and, when logged inside a request,
//! its `request_id` attribute and trace and span ids.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::metrics::Metrics;

/// Records buffered at most (the OpenTelemetry SDK's default queue is 2048; a request
/// burst of a busy service logs more, and a record is a few hundred bytes).
pub const DEFAULT_CAPACITY: usize = 8192;
/// Records per request (the SDK's batch size is 512).
pub const DEFAULT_BATCH: usize = 512;
/// Longest wait before a partial batch is sent (the SDK's delay).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait between attempts while logging is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured, so a confused server cannot park shipping for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Time allowed for one export request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Supplies the bearer token sent with each batch (a service's client-credentials
/// source); `None` sends no `Authorization` header.
pub trait TokenSource: Send + Sync + fmt::Debug + 'static {
    /// A current token.
    fn token(&self) -> BoxFuture<'_, Option<String>>;
}

/// Where and how to ship.
#[derive(Debug, Clone)]
pub struct ShippingConfig {
    /// The logging service's OTLP endpoint, e.g. `http://logging:8080/v1/logs`.
    pub endpoint: String,
    /// The `service.name` of every record.
    pub service: String,
    /// Records buffered at most.
    pub capacity: usize,
    /// Records per request at most.
    pub batch: usize,
    /// Longest wait before a partial batch is sent.
    pub interval: Duration,
    /// The bearer token, when logging requires one.
    pub token: Option<Arc<dyn TokenSource>>,
}

impl ShippingConfig {
    /// Defaults for `service` shipping to `endpoint`.
    pub fn new(endpoint: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            service: service.into(),
            capacity: DEFAULT_CAPACITY,
            batch: DEFAULT_BATCH,
            interval: DEFAULT_INTERVAL,
            token: None,
        }
    }
}

/// Counters of the shipper, registered by [`Shipper::register_metrics`].
#[derive(Debug, Clone, Default)]
struct ShippingMetrics {
    shipped: Counter,
    dropped: Counter,
    rejected: Counter,
}

#[derive(Debug)]
struct Shared {
    buffer: Mutex<VecDeque<LogRecord>>,
    capacity: usize,
    batch: usize,
    ready: Notify,
    metrics: ShippingMetrics,
}

impl Shared {
    fn push(&self, record: LogRecord) {
        let len = {
            let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            if buffer.len() >= self.capacity {
                buffer.pop_front();
                self.metrics.dropped.inc();
            }
            buffer.push_back(record);
            buffer.len()
        };
        if len >= self.batch {
            self.ready.notify_one();
        }
    }

    fn take(&self, n: usize) -> Vec<LogRecord> {
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let n = n.min(buffer.len());
        buffer.drain(..n).collect()
    }
}

/// The handle of a running shipper: its counters.
#[derive(Debug, Clone)]
pub struct Shipper {
    shared: Arc<Shared>,
}

impl Shipper {
    /// Records sent and accepted.
    pub fn shipped(&self) -> u64 {
        self.shared.metrics.shipped.get()
    }

    /// Records dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.metrics.dropped.get()
    }

    /// Adds `tessera_log_shipping_{shipped,dropped,rejected}_total` to `metrics`.
    pub fn register_metrics(&self, metrics: &Metrics) {
        let m = &self.shared.metrics;
        metrics.register(
            "log_shipping_shipped",
            "Log records shipped to logging",
            m.shipped.clone(),
        );
        metrics.register(
            "log_shipping_dropped",
            "Log records dropped because the shipping buffer was full",
            m.dropped.clone(),
        );
        metrics.register(
            "log_shipping_rejected",
            "Log records logging refused as invalid",
            m.rejected.clone(),
        );
    }
}

/// Starts shipping on the current Tokio runtime: returns the layer to add to the
/// subscriber and the handle. The task ends when the runtime does.
pub fn start(config: ShippingConfig) -> (ShippingLayer, Shipper) {
    let shared = Arc::new(Shared {
        buffer: Mutex::new(VecDeque::with_capacity(
            config.capacity.min(DEFAULT_CAPACITY),
        )),
        capacity: config.capacity.max(1),
        batch: config.batch.max(1),
        ready: Notify::new(),
        metrics: ShippingMetrics::default(),
    });
    tokio::spawn(send_loop(shared.clone(), config));
    (
        ShippingLayer {
            shared: shared.clone(),
        },
        Shipper { shared },
    )
}

enum Outcome {
    Sent,
    /// Refused as bad: do not send again.
    Refused,
    /// Try again after this long.
    Retry(Duration),
}

async fn send_loop(shared: Arc<Shared>, config: ShippingConfig) {
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        // Only fails when the TLS backend cannot initialise: a broken build, not input.
        .expect("the log shipping HTTP client must build");
    let resource = Resource {
        attributes: vec![string_attribute("service.name", &config.service)],
        ..Resource::default()
    };
    let mut backoff = Duration::from_millis(500);
    loop {
        // A full batch wakes us at once; otherwise send what there is every interval.
        let _ = tokio::time::timeout(config.interval, shared.ready.notified()).await;
        loop {
            let records = shared.take(shared.batch);
            if records.is_empty() {
                break;
            }
            let count = records.len() as u64;
            let body = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource.clone()),
                    scope_logs: vec![ScopeLogs {
                        log_records: records,
                        ..ScopeLogs::default()
                    }],
                    schema_url: String::new(),
                }],
            }
            .encode_to_vec();
            loop {
                match export(&http, &config, body.clone()).await {
                    Outcome::Sent => {
                        shared.metrics.shipped.inc_by(count);
                        backoff = Duration::from_millis(500);
                        break;
                    }
                    Outcome::Refused => {
                        shared.metrics.rejected.inc_by(count);
                        break;
                    }
                    Outcome::Retry(after) => {
                        let wait = if after.is_zero() { backoff } else { after };
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }
}

async fn export(http: &reqwest::Client, config: &ShippingConfig, body: Vec<u8>) -> Outcome {
    let mut request = http
        .post(&config.endpoint)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body);
    if let Some(source) = &config.token
        && let Some(token) = source.token().await
    {
        request = request.bearer_auth(token);
    }
    let Ok(response) = request.send().await else {
        return Outcome::Retry(Duration::ZERO);
    };
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, |s| {
            Duration::from_secs(s).min(MAX_RETRY_AFTER)
        });
    match response.status().as_u16() {
        200..=299 => Outcome::Sent,
        429 | 502 | 503 | 504 => Outcome::Retry(retry_after),
        // An expired token or logging still starting: worth another try later.
        401 | 403 | 408 => Outcome::Retry(Duration::ZERO),
        _ => Outcome::Refused,
    }
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// The request identity a span carries (the kit's `request` span records these).
#[derive(Debug, Default, Clone)]
#[allow(
    clippy::struct_field_names,
    reason = "the names of the span fields they copy"
)]
struct SpanIds {
    request_id: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
}

impl Visit for SpanIds {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, format!("{value:?}"));
    }
}

impl SpanIds {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "request_id" => self.request_id = Some(value),
            "trace_id" => self.trace_id = Some(value),
            "span_id" => self.span_id = Some(value),
            _ => {}
        }
    }
}

/// An event's message and fields.
#[derive(Default)]
struct EventFields {
    message: String,
    attributes: Vec<KeyValue>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.attributes.push(string_attribute(field.name(), value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, any_value::Value::IntValue(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(
            field,
            any_value::Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, any_value::Value::DoubleValue(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, any_value::Value::BoolValue(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.record_str(field, &text);
    }
}

impl EventFields {
    fn push(&mut self, field: &Field, value: any_value::Value) {
        self.attributes.push(KeyValue {
            key: field.name().to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        });
    }
}

/// OTLP severity number and text of a `tracing` level.
fn severity(level: Level) -> (i32, &'static str) {
    match level {
        Level::TRACE => (1, "TRACE"),
        Level::DEBUG => (5, "DEBUG"),
        Level::INFO => (9, "INFO"),
        Level::WARN => (13, "WARN"),
        Level::ERROR => (17, "ERROR"),
    }
}

fn decode_hex(text: &str) -> Vec<u8> {
    if !text.len().is_multiple_of(2) {
        return Vec::new();
    }
    (0..text.len() / 2)
        .map_while(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect()
}

/// The `tracing` layer feeding the shipper.
#[derive(Debug, Clone)]
pub struct ShippingLayer {
    shared: Arc<Shared>,
}

impl<S> Layer<S> for ShippingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut ids = SpanIds::default();
        attrs.record(&mut ids);
        if (ids.request_id.is_some() || ids.trace_id.is_some())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(ids);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(ids) = extensions.get_mut::<SpanIds>() {
                values.record(ids);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // Never ship the shipper's own HTTP client chatter (it would feed itself).
        let target = event.metadata().target();
        if target.starts_with("hyper") || target.starts_with("reqwest") || target.starts_with("h2")
        {
            return;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let mut ids = SpanIds::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(found) = span.extensions().get::<SpanIds>() {
                    ids = found.clone();
                    break;
                }
            }
        }
        let mut attributes = fields.attributes;
        if let Some(request_id) = &ids.request_id {
            attributes.push(string_attribute("request_id", request_id));
        }
        attributes.push(string_attribute("code.namespace", target));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let (severity_number, severity_text) = severity(*event.metadata().level());
        self.shared.push(LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number,
            severity_text: severity_text.to_owned(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(fields.message)),
            }),
            attributes,
            trace_id: ids.trace_id.as_deref().map(decode_hex).unwrap_or_default(),
            span_id: ids.span_id.as_deref().map(decode_hex).unwrap_or_default(),
            ..LogRecord::default()
        });
    }
}
