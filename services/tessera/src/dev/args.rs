//! `tessera dev`'s command line: the data directory, every service's listeners and the
//! log settings, each with a default so `tessera dev` alone runs the platform.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use service_kit::{Listeners, LogFormat, TelemetryArgs};

/// `tessera dev` settings. Everything has a default: `tessera dev` alone runs the platform.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Directory for SQLite files, generated secrets, mail and other state; created if
    /// missing.
    #[arg(
        long,
        env = "TESSERA_DATA_DIR",
        default_value = "./.tessera",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Admin listener of the all-in-one process (/healthz, /readyz over every service,
    /// /metrics).
    #[arg(
        long,
        env = "TESSERA_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,

    /// The gateway: the one address clients use (and the token issuer).
    #[arg(
        long,
        env = "TESSERA_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// The gateway's admin listener.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "ADDR")]
    pub gateway_admin_listen: SocketAddr,

    /// Identity's own public API (the gateway forwards to it; direct access is for
    /// debugging).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub identity_listen: SocketAddr,

    /// Identity's admin listener (/healthz, /readyz, /metrics, /debug/keys).
    #[arg(long, default_value = "127.0.0.1:9091", value_name = "ADDR")]
    pub identity_admin_listen: SocketAddr,

    /// Profile's own public API (the gateway forwards `/v1/profiles` to it).
    #[arg(long, default_value = "127.0.0.1:8083", value_name = "ADDR")]
    pub profile_listen: SocketAddr,

    /// Profile's admin listener.
    #[arg(long, default_value = "127.0.0.1:9093", value_name = "ADDR")]
    pub profile_admin_listen: SocketAddr,

    /// Notification's own public API (the gateway forwards `/v1/notifications` to it).
    #[arg(long, default_value = "127.0.0.1:8084", value_name = "ADDR")]
    pub notification_listen: SocketAddr,

    /// Notification's admin listener.
    #[arg(long, default_value = "127.0.0.1:9094", value_name = "ADDR")]
    pub notification_admin_listen: SocketAddr,

    /// Logging's own public API: OTLP ingestion at `/v1/logs` (every service's records are
    /// shipped there), queries, the audit chain and the explorer (the gateway forwards
    /// `/logging/` to it for admins).
    #[arg(long, default_value = "127.0.0.1:8085", value_name = "ADDR")]
    pub logging_listen: SocketAddr,

    /// Logging's admin listener.
    #[arg(long, default_value = "127.0.0.1:9095", value_name = "ADDR")]
    pub logging_admin_listen: SocketAddr,

    /// Emails that get the admin role when they sign up, comma-separated.
    #[arg(long, env = "TESSERA_BOOTSTRAP_ADMINS", value_delimiter = ',')]
    pub bootstrap_admins: Vec<String>,

    /// Log line format: `pretty` (default here, for a terminal) or `json`.
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Which log records to write, in `tracing` filter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_name = "FILTER")]
    pub log_filter: String,
}

impl DevArgs {
    /// The log settings.
    pub fn telemetry(&self) -> TelemetryArgs {
        TelemetryArgs {
            log_format: self.log_format,
            log_filter: self.log_filter.clone(),
        }
    }

    /// Binds logging's listeners, first of all: the process's one shipping layer needs
    /// logging's address before any record is written.
    pub async fn bind_logging(&self) -> anyhow::Result<Listeners> {
        Listeners::bind_addrs(self.logging_listen, self.logging_admin_listen)
            .await
            .context("logging (--logging-listen / --logging-admin-listen)")
    }
}
