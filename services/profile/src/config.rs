//! Profile's settings: the public contract with the operator and the Helm chart. Every
//! flag has a `TESSERA_*` environment fallback.

use secrecy::SecretString;
use service_kit::{DatabaseArgs, HttpArgs, LogShippingArgs, TelemetryArgs};

/// `tessera-profile` command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "tessera-profile",
    version,
    about = "Tessera profile: user profiles; publishes user.created"
)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// `--log-endpoint`: ship logs to the logging service (with the service token below).
    #[command(flatten)]
    pub log_shipping: LogShippingArgs,

    /// Identity's token endpoint (`http://identity:8080/oauth2/token`), for profile's own
    /// service token: logging accepts shipped logs only from clients with the `service`
    /// role. Unset: logs are shipped without a token (logging with auth disabled).
    #[arg(long, env = "TESSERA_TOKEN_URL", value_name = "URL")]
    pub token_url: Option<String>,

    /// Profile's client id at identity.
    #[arg(long, env = "TESSERA_CLIENT_ID", default_value = "profile")]
    pub client_id: String,

    /// Profile's client secret (required with `--token-url`).
    #[arg(long, env = "TESSERA_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<SecretString>,

    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub auth: tessera_auth::AuthArgs,
    #[command(flatten)]
    pub bus: tessera_events::JetStreamArgs,
}
