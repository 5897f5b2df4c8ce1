//! The settings every service shares, as clap argument groups with `TESSERA_*` environment
//! fallbacks, and the start-up parse that turns a bad setting into one clear line.
//!
//! A service's config struct flattens these groups next to its own settings:
//!
//! ```
//! #[derive(Debug, clap::Parser)]
//! struct Config {
//!     #[command(flatten)]
//!     http: service_kit::HttpArgs,
//!     #[command(flatten)]
//!     telemetry: service_kit::TelemetryArgs,
//! }
//! # let _ = <Config as clap::Parser>::try_parse_from(["svc"]);
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use clap::error::ErrorKind;

use crate::db::DatabaseUrl;

/// Public and admin listeners and the limits applied to every public request.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Address of the public API listener.
    #[arg(
        long,
        env = "TESSERA_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Address of the admin listener (/healthz, /readyz, /metrics, /debug/*). Never route
    /// it through the gateway or an Ingress.
    #[arg(
        long,
        env = "TESSERA_ADMIN_LISTEN",
        default_value = "0.0.0.0:9090",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "TESSERA_MAX_BODY_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=1024 * 1024 * 1024))]
    pub max_body_bytes: u64,

    /// Largest request head (request line and headers), in bytes; larger ones get 431.
    #[arg(long, env = "TESSERA_MAX_HEADER_BYTES", default_value_t = 32 * 1024,
          value_parser = clap::value_parser!(u64).range(8192..=1024 * 1024))]
    pub max_header_bytes: u64,

    /// Time a request may take before it is answered with 503, in seconds.
    #[arg(long, env = "TESSERA_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,

    /// On SIGTERM, time given to in-flight requests before they are cut, in seconds. Keep
    /// it below the pod's terminationGracePeriodSeconds (30 by default).
    #[arg(long, env = "TESSERA_DRAIN_TIMEOUT_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_timeout_secs: u64,
}

impl HttpArgs {
    /// The limits as the server uses them.
    pub fn settings(&self) -> HttpSettings {
        HttpSettings {
            max_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
        }
    }
}

/// Limits applied by [`crate::Service`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest request head accepted (HTTP/1.1; at least 8192).
    pub max_header_bytes: usize,
    /// Time a request may take.
    pub request_timeout: Duration,
    /// Time in-flight requests get after shutdown begins.
    pub drain_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 32 * 1024,
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Log output settings.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log line format: `json` (one object per line, for collectors) or `pretty`.
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Which log records to write, in `tracing` filter syntax (e.g. `info,sqlx=warn`).
    #[arg(long, env = "RUST_LOG", default_value = "info", value_name = "FILTER")]
    pub log_filter: String,
}

/// Where a service ships its logs (besides stdout). Flatten it beside
/// [`TelemetryArgs`] and start with [`crate::telemetry::init_with_shipping`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogShippingArgs {
    /// The logging service's OTLP/HTTP logs endpoint, e.g. `http://logging:8080/v1/logs`.
    /// Unset: logs only go to stdout.
    #[arg(long, env = "TESSERA_LOG_ENDPOINT", value_name = "URL")]
    pub log_endpoint: Option<String>,

    /// Log records buffered for shipping; when logging is slow or down the oldest are
    /// dropped (and counted in `tessera_log_shipping_dropped_total`).
    #[arg(long, env = "TESSERA_LOG_BUFFER_RECORDS", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub log_buffer_records: u32,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable, coloured when writing to a terminal.
    Pretty,
}

/// The database a service stores its data in.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// `sqlite:<path>` (created if missing), `sqlite::memory:`, or
    /// `postgres://user:password@host/db`.
    #[arg(
        long,
        env = "TESSERA_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,

    /// Largest number of pooled database connections.
    #[arg(long, env = "TESSERA_DATABASE_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
}

/// Parses the command line and environment into `T`, or exits.
///
/// `--help` and `--version` print as usual. A bad or missing setting prints one line
/// naming it and what was expected, then exits with status 2: a person reading a
/// crash-looping pod's log sees the cause on the first line, with no usage dump.
pub fn parse_or_exit<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(config) => config,
        Err(error) => exit_on(&error),
    }
}

fn exit_on(error: &clap::Error) -> ! {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit();
    }
    eprintln!("{}", one_line(error));
    std::process::exit(2);
}

/// Clap's message up to its usage section, on one line, without the `error: ` prefix,
/// plus a pointer to `--help`.
fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("tip:"))
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("configuration error: {message} (see --help)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Config {
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    }

    #[test]
    fn a_bad_setting_is_reported_on_one_line_naming_it() {
        let error = Config::try_parse_from(["svc", "--listen", "nowhere", "--database-url", "x"])
            .expect_err("bad address");
        let line = one_line(&error);
        assert!(!line.contains('\n'));
        assert!(line.contains("--listen"), "{line}");
        assert!(line.starts_with("configuration error: "), "{line}");
    }

    #[test]
    fn a_missing_database_url_names_the_flag() {
        let error = Config::try_parse_from(["svc"]).expect_err("missing url");
        assert!(
            one_line(&error).contains("--database-url"),
            "{}",
            one_line(&error)
        );
    }

    #[test]
    fn defaults_are_the_container_ports() {
        let config =
            Config::try_parse_from(["svc", "--database-url", "sqlite::memory:"]).expect("valid");
        assert_eq!(config.http.listen.port(), 8080);
        assert_eq!(config.http.admin_listen.port(), 9090);
        assert_eq!(
            config.http.settings().drain_timeout,
            Duration::from_secs(20)
        );
    }
}
