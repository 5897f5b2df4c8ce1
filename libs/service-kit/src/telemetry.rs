//! Log output: `tracing` records as JSON lines or pretty text on stdout, filtered by
//! `RUST_LOG` syntax.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, TelemetryArgs};

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
