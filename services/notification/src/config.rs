//! Notification's settings: the public contract with the operator and the Helm chart.
//! Every flag has a `TESSERA_*` environment fallback; secrets are never shown by `--help`.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use service_kit::{DatabaseArgs, HttpArgs, LogShippingArgs, TelemetryArgs};

use crate::channel::smtp::SmtpTls;

/// `tessera-notification` command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "tessera-notification",
    version,
    about = "Tessera notification: email, SMS and push delivery"
)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// `--log-endpoint`: ship logs to the logging service, with notification's service
    /// token (`--token-url`, `--client-id`, `--client-secret`).
    #[command(flatten)]
    pub log_shipping: LogShippingArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub auth: tessera_auth::AuthArgs,
    #[command(flatten)]
    pub bus: tessera_events::JetStreamArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub email: EmailArgs,
    #[command(flatten)]
    pub providers: ProviderArgs,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
}

/// Where recipients' addresses and preferences come from.
#[derive(Debug, Clone, clap::Args)]
pub struct ProfileArgs {
    /// Base URL of the profile service, e.g. `http://profile:8080`.
    #[arg(long, env = "TESSERA_PROFILE_URL", value_name = "URL")]
    pub profile_url: String,

    /// Identity's token endpoint, for notification's own service token.
    #[arg(long, env = "TESSERA_TOKEN_URL", value_name = "URL")]
    pub token_url: String,

    /// Notification's client id at identity (it needs the `service` role).
    #[arg(long, env = "TESSERA_CLIENT_ID", default_value = "notification")]
    pub client_id: String,

    /// Notification's client secret.
    #[arg(long, env = "TESSERA_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: SecretString,

    /// Seconds a fetched profile (address, locale, preferences) is reused; a profile a
    /// `user.created` event carried counts as fetched at the event's time.
    #[arg(long, env = "TESSERA_PREFERENCES_TTL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub preferences_ttl_secs: u64,
}

/// Where email goes.
#[derive(Debug, Clone, clap::Args)]
pub struct EmailArgs {
    /// `smtp`, or `file` to write `.eml` files into `--email-dir` (all-in-one mode).
    #[arg(long, env = "TESSERA_EMAIL_TRANSPORT", default_value = "smtp",
          value_parser = ["smtp", "file"])]
    pub email_transport: String,

    /// The whole SMTP connection as one URL, overriding the `--smtp-*` host, port, TLS
    /// and credential flags: `smtps://user:pass@host:465`,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtp://host:25` (plain).
    #[arg(
        long,
        env = "TESSERA_SMTP_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub smtp_url: Option<SecretString>,

    /// SMTP server host.
    #[arg(long, env = "TESSERA_SMTP_HOST", default_value = "localhost")]
    pub smtp_host: String,

    /// SMTP server port (587 for STARTTLS, 465 for implicit TLS, 25 plain).
    #[arg(long, env = "TESSERA_SMTP_PORT", default_value_t = 587)]
    pub smtp_port: u16,

    /// Transport security of the SMTP connection.
    #[arg(long, env = "TESSERA_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,

    /// SMTP user name (authentication is used when it and the password are set).
    #[arg(long, env = "TESSERA_SMTP_USERNAME")]
    pub smtp_username: Option<String>,

    /// SMTP password.
    #[arg(long, env = "TESSERA_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<SecretString>,

    /// Seconds an SMTP exchange may take.
    #[arg(long, env = "TESSERA_SMTP_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub smtp_timeout_secs: u64,

    /// The `From` of every email, e.g. `Tessera <no-reply@example.com>`.
    #[arg(
        long,
        env = "TESSERA_EMAIL_FROM",
        default_value = "Tessera <no-reply@tessera.local>"
    )]
    pub email_from: String,

    /// Directory of `.eml` files (`--email-transport file`).
    #[arg(long, env = "TESSERA_EMAIL_DIR", value_name = "DIR")]
    pub email_dir: Option<PathBuf>,
}

/// SMS and push providers.
#[derive(Debug, Clone, clap::Args)]
pub struct ProviderArgs {
    /// SMS provider webhook (JSON POST). Without it and `--sms-dir`, SMS is off.
    #[arg(long, env = "TESSERA_SMS_WEBHOOK_URL", value_name = "URL")]
    pub sms_webhook_url: Option<String>,

    /// Header sent to the SMS provider as `Name: value`, e.g. `Authorization: Bearer x`.
    #[arg(long, env = "TESSERA_SMS_WEBHOOK_AUTH", hide_env_values = true)]
    pub sms_webhook_auth: Option<SecretString>,

    /// Write SMS as JSON files into this directory instead (all-in-one mode).
    #[arg(long, env = "TESSERA_SMS_DIR", value_name = "DIR")]
    pub sms_dir: Option<PathBuf>,

    /// Push provider webhook (JSON POST). Without it and `--push-dir`, push is off.
    #[arg(long, env = "TESSERA_PUSH_WEBHOOK_URL", value_name = "URL")]
    pub push_webhook_url: Option<String>,

    /// Header sent to the push provider as `Name: value`.
    #[arg(long, env = "TESSERA_PUSH_WEBHOOK_AUTH", hide_env_values = true)]
    pub push_webhook_auth: Option<SecretString>,

    /// Write push messages as JSON files into this directory instead (all-in-one mode).
    #[arg(long, env = "TESSERA_PUSH_DIR", value_name = "DIR")]
    pub push_dir: Option<PathBuf>,

    /// Seconds a provider call may take.
    #[arg(long, env = "TESSERA_PROVIDER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub provider_timeout_secs: u64,
}

/// Templates, retries, rate limits, workers.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    /// Directory of `<template>.<locale>.<part>.j2` files adding to or replacing the
    /// embedded templates.
    #[arg(long, env = "TESSERA_TEMPLATES_DIR", value_name = "DIR")]
    pub templates_dir: Option<PathBuf>,

    /// Locale every template must have; used when the recipient's is not available.
    #[arg(long, env = "TESSERA_DEFAULT_LOCALE", default_value = "en")]
    pub default_locale: String,

    /// Waits before each retry of a transient failure, in seconds, comma-separated;
    /// after the last one the job fails. ±20 % jitter is added to each.
    #[arg(
        long,
        env = "TESSERA_RETRY_SCHEDULE_SECS",
        value_delimiter = ',',
        default_value = "5,30,120,600,1800,7200,18000"
    )]
    pub retry_schedule_secs: Vec<f64>,

    /// Emails sent per second at most (0: no limit).
    #[arg(long, env = "TESSERA_EMAIL_RATE_PER_SEC", default_value_t = 100.0)]
    pub email_rate_per_sec: f64,

    /// SMS sent per second at most (0: no limit).
    #[arg(long, env = "TESSERA_SMS_RATE_PER_SEC", default_value_t = 10.0)]
    pub sms_rate_per_sec: f64,

    /// Push messages sent per second at most (0: no limit).
    #[arg(long, env = "TESSERA_PUSH_RATE_PER_SEC", default_value_t = 100.0)]
    pub push_rate_per_sec: f64,

    /// Jobs delivered at the same time. Each worker waits a whole SMTP round trip per
    /// mail (~50 ms here), so 32 workers are what 200 welcome mails/s needed
    /// (bench/README.md, "notification"); 8 fell behind.
    #[arg(long, env = "TESSERA_DELIVERY_WORKERS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub delivery_workers: u32,

    /// Seconds a job stays claimed while being sent; a job still `sending` after that
    /// (its process died) is sent again. A running send renews it every third.
    #[arg(long, env = "TESSERA_DELIVERY_LEASE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub delivery_lease_secs: u64,

    /// Seconds an `Idempotency-Key` is remembered (at least a day).
    #[arg(long, env = "TESSERA_IDEMPOTENCY_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(86_400..))]
    pub idempotency_ttl_secs: u64,
}

impl DeliveryArgs {
    /// The retry schedule, validated.
    pub fn retry_schedule(&self) -> Result<Vec<Duration>, String> {
        self.retry_schedule_secs
            .iter()
            .map(|secs| {
                Duration::try_from_secs_f64(*secs).map_err(|_| {
                    format!("--retry-schedule-secs: {secs} is not a number of seconds")
                })
            })
            .collect()
    }
}
