//! The logging service's settings: its public contract with the operator and the Helm
//! chart. Every flag has a `TESSERA_*` environment fallback.

use service_kit::{DatabaseArgs, HttpArgs, TelemetryArgs};

/// `tessera-logging` command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "tessera-logging",
    version,
    about = "Tessera logging: OTLP log ingestion, queries, explorer, audit chain"
)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,

    /// NATS JetStream URL (`nats://host:4222`) to consume audit events from
    /// (`tessera.audit.>`). Without it the audit chain only records events sent to
    /// `POST /v1/audit/events`.
    #[arg(
        long,
        env = "TESSERA_NATS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub nats_url: Option<String>,
}

/// How callers are authenticated.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Identity's JWKS URL, e.g. `http://identity:8080/.well-known/jwks.json`. Required
    /// unless `--insecure-disable-auth`.
    #[arg(long, env = "TESSERA_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// The token issuer (`iss`) to accept. Required unless `--insecure-disable-auth`.
    #[arg(long, env = "TESSERA_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,

    /// Audiences accepted in `aud`, comma-separated.
    #[arg(
        long,
        env = "TESSERA_AUDIENCES",
        value_delimiter = ',',
        default_value = "tessera"
    )]
    pub audiences: Vec<String>,

    /// Accept every request without a token. Only for the all-in-one `tessera dev`, where
    /// everything runs in one process on loopback; never in a deployment.
    #[arg(long, env = "TESSERA_INSECURE_DISABLE_AUTH", default_value_t = false)]
    pub insecure_disable_auth: bool,
}

/// Ingestion limits.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Log records that may wait for the database at once; beyond that `/v1/logs`
    /// answers 429 with `Retry-After` (the sender keeps its records and retries).
    #[arg(long, env = "TESSERA_INGEST_QUEUE_RECORDS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(100..=10_000_000))]
    pub ingest_queue_records: u32,

    /// Records written per database transaction at most.
    #[arg(long, env = "TESSERA_INGEST_BATCH_RECORDS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub ingest_batch_records: u32,

    /// Largest log body kept, in bytes; longer bodies are cut at a character boundary
    /// and the record gets the attribute `tessera.body_truncated = true`.
    #[arg(long, env = "TESSERA_MAX_LOG_BODY_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(256..=16 * 1024 * 1024))]
    pub max_log_body_bytes: u32,

    /// Attributes kept per record; the rest are dropped and counted in
    /// `dropped_attributes_count` (the OTLP field for exactly this).
    #[arg(long, env = "TESSERA_MAX_LOG_ATTRIBUTES", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_log_attributes: u32,
}

/// How long records are kept.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// Days TRACE and DEBUG records are kept.
    #[arg(long, env = "TESSERA_RETENTION_DEBUG_DAYS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub retention_debug_days: u32,

    /// Days INFO and more severe records are kept (and the horizon for accepting old
    /// timestamps: older ones are clamped to the time they were received).
    #[arg(long, env = "TESSERA_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub retention_days: u32,
}
