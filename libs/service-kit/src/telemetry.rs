//! Log output: `tracing` records as JSON lines or pretty text on stdout, filtered by
//! `RUST_LOG` syntax.

use std::io::IsTerminal as _;
use std::sync::Arc;

use tracing::Subscriber;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogShippingArgs, TelemetryArgs};
use crate::log_shipping::{self, Shipper, ShippingConfig, ShippingLayer, TokenSource};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid log filter (--log-filter / RUST_LOG) {filter:?}: {reason}")]
pub struct TelemetryError {
    filter: String,
    reason: String,
}

/// Installs the global log subscriber. A second call (tests, the all-in-one binary
/// starting several services) keeps the first subscriber and succeeds.
pub fn init(args: &TelemetryArgs) -> Result<(), TelemetryError> {
    let filter = log_filter(args)?;
    // Err only means a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::registry()
        .with(stdout_layer(args.log_format).with_filter(filter))
        .try_init();
    Ok(())
}

/// `args.log_filter` (`RUST_LOG` syntax) parsed, or an error naming the flag.
pub fn log_filter(args: &TelemetryArgs) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(&args.log_filter).map_err(|e| TelemetryError {
        filter: args.log_filter.clone(),
        reason: e.to_string(),
    })
}

/// The stdout layer every Tessera process prints with: one JSON object a line (event
/// fields flattened, the current span's fields beside them) or compact text.
pub fn stdout_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(FmtSpan::NONE)
            .boxed(),
        // Colours only for a terminal: escape codes in a file or `kubectl logs` are noise.
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
    }
}

/// Like [`init`], and also ships every record to `shipping.log_endpoint` (when set) as
/// `service`, without a token. Call inside the Tokio runtime. Returns the shipper, whose
/// counters the service registers with [`Shipper::register_metrics`].
pub fn init_with_shipping(
    args: &TelemetryArgs,
    shipping: &LogShippingArgs,
    service: &str,
) -> Result<Option<Shipper>, TelemetryError> {
    init_with_shipping_token(args, shipping, service, None)
}

/// The shipping layer and its handle for `service` when `shipping.log_endpoint` is set,
/// sending `token` with each batch; for callers composing their own subscriber (tests
/// install it per thread). Call inside the Tokio runtime.
pub fn shipping_layer(
    shipping: &LogShippingArgs,
    service: &str,
    token: Option<Arc<dyn TokenSource>>,
) -> Option<(ShippingLayer, Shipper)> {
    let endpoint = shipping.log_endpoint.as_ref()?;
    let mut config = ShippingConfig::new(endpoint.clone(), service);
    config.capacity = shipping.log_buffer_records as usize;
    config.token = token;
    Some(log_shipping::start(config))
}

/// Like [`init_with_shipping`], sending `token` (the service's client-credentials
/// source) with each batch, as logging requires unless it runs with auth disabled.
pub fn init_with_shipping_token(
    args: &TelemetryArgs,
    shipping: &LogShippingArgs,
    service: &str,
    token: Option<Arc<dyn TokenSource>>,
) -> Result<Option<Shipper>, TelemetryError> {
    let filter = log_filter(args)?;
    let Some((layer, shipper)) = shipping_layer(shipping, service, token) else {
        init(args)?;
        return Ok(None);
    };
    // The same filter decides what is printed and what is shipped.
    let _ = tracing_subscriber::registry()
        .with(
            stdout_layer(args.log_format)
                .and_then(layer)
                .with_filter(filter),
        )
        .try_init();
    Ok(Some(shipper))
}
