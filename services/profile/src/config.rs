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
    pub auth: AuthArgs,
    #[command(flatten)]
    pub bus: BusArgs,
}

/// The event bus.
#[derive(Debug, Clone, clap::Args)]
pub struct BusArgs {
    /// NATS server with JetStream, e.g. `nats://nats:4222`. Events wait in the outbox
    /// while it is unreachable.
    #[arg(long, env = "TESSERA_NATS_URL", value_name = "URL")]
    pub nats_url: String,

    /// The JetStream stream holding the platform's events.
    #[arg(long, env = "TESSERA_NATS_STREAM", default_value = "TESSERA")]
    pub nats_stream: String,

    /// First subject token of the platform's events (`<root>.events.…`); change it, with
    /// the stream, only to run several platforms on one NATS server.
    #[arg(long, env = "TESSERA_NATS_SUBJECT_ROOT", default_value = "tessera")]
    pub nats_subject_root: String,
}

impl BusArgs {
    /// The bus settings of `service`.
    pub fn nats_config(&self, service: &str) -> tessera_events::NatsConfig {
        let mut config = tessera_events::NatsConfig::new(self.nats_url.clone(), service);
        config.stream.clone_from(&self.nats_stream);
        config.subject_root.clone_from(&self.nats_subject_root);
        config
    }
}

/// How access tokens are checked (the same settings as the gateway's).
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Identity's JWKS URL, e.g. `http://identity:8080/.well-known/jwks.json`.
    #[arg(long, env = "TESSERA_JWKS_URL", value_name = "URL")]
    pub jwks_url: String,

    /// The token issuer (`iss`) to accept.
    #[arg(long, env = "TESSERA_ISSUER", value_name = "URL")]
    pub issuer: String,

    /// Audiences accepted in `aud`, comma-separated.
    #[arg(
        long,
        env = "TESSERA_AUDIENCES",
        value_delimiter = ',',
        default_value = "tessera"
    )]
    pub audiences: Vec<String>,

    /// How long fetched keys are used before the JWKS is fetched again, in seconds. Keep
    /// it at or below identity's `--jwks-max-age-secs`.
    #[arg(long, env = "TESSERA_JWKS_REFRESH_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub jwks_refresh_secs: u64,
}
