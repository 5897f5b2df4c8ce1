//! Log output: `tracing` records as JSON lines or pretty text on stdout, filtered by
//! `RUST_LOG` syntax.

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, LogShippingArgs, TelemetryArgs};
use crate::log_shipping::{self, Shipper, ShippingConfig};

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
    let filter = EnvFilter::try_new(&args.log_filter).map_err(|e| TelemetryError {
        filter: args.log_filter.clone(),
        reason: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE);
    // Err only means a subscriber is already installed, which is fine.
    let _ = match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    Ok(())
}

/// Like [`init`], and also ships every record to `shipping.log_endpoint` (when set) as
/// `service`. Call inside the Tokio runtime. Returns the shipper, whose counters the
/// service registers with [`Shipper::register_metrics`].
pub fn init_with_shipping(
    args: &TelemetryArgs,
    shipping: &LogShippingArgs,
    service: &str,
) -> Result<Option<Shipper>, TelemetryError> {
    let Some(endpoint) = &shipping.log_endpoint else {
        init(args)?;
        return Ok(None);
    };
    let filter = EnvFilter::try_new(&args.log_filter).map_err(|e| TelemetryError {
        filter: args.log_filter.clone(),
        reason: e.to_string(),
    })?;
    let mut config = ShippingConfig::new(endpoint.clone(), service);
    config.capacity = shipping.log_buffer_records as usize;
    let (layer, shipper) = log_shipping::start(config);
    let stdout = match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(FmtSpan::NONE)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    // The same filter decides what is printed and what is shipped.
    let _ = tracing_subscriber::registry()
        .with(stdout.and_then(layer).with_filter(filter))
        .try_init();
    Ok(Some(shipper))
}
