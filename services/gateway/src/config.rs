//! The gateway's settings: its public contract with the operator and the Helm chart.

use std::path::PathBuf;

use ipnet::IpNet;
use secrecy::SecretString;
use service_kit::{HttpArgs, LogShippingArgs, TelemetryArgs};

/// `tessera-gateway` command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "tessera-gateway", version, about = "Tessera API gateway")]
pub struct Config {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// `--log-endpoint`: ship logs to the logging service (with the service token below).
    #[command(flatten)]
    pub log_shipping: LogShippingArgs,

    /// Identity's token endpoint (`http://identity:8080/oauth2/token`), for the gateway's
    /// own service token: logging accepts shipped logs only from clients with the
    /// `service` role. Unset: logs are shipped without a token (logging with auth
    /// disabled, as in the all-in-one mode).
    #[arg(long, env = "TESSERA_TOKEN_URL", value_name = "URL")]
    pub token_url: Option<String>,

    /// The gateway's client id at identity.
    #[arg(long, env = "TESSERA_CLIENT_ID", default_value = "gateway")]
    pub client_id: String,

    /// The gateway's client secret (required with `--token-url`).
    #[arg(long, env = "TESSERA_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<SecretString>,

    /// The routes file (YAML), watched for changes; see the gateway README for the format.
    #[arg(long, env = "TESSERA_ROUTES_FILE", value_name = "FILE")]
    pub routes_file: PathBuf,

    /// `--jwks-url`, `--issuer`, `--audiences`, `--jwks-refresh-secs`: how access tokens
    /// are checked (the same flags as every service's).
    #[command(flatten)]
    pub auth: tessera_auth::AuthArgs,

    /// Networks of proxies in front of the gateway (e.g. the ingress), comma-separated
    /// CIDRs. Only from these is `X-Forwarded-For` believed.
    #[arg(
        long,
        env = "TESSERA_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<IpNet>,

    /// Where rate-limit counters live: `local` (this process) or `redis` (shared by every
    /// replica).
    #[arg(long, env = "TESSERA_RATE_LIMIT_BACKEND", value_enum, default_value_t = LimiterBackend::Local)]
    pub rate_limit_backend: LimiterBackend,

    /// Redis URL for the `redis` backend, e.g. `redis://redis:6379/`.
    #[arg(
        long,
        env = "TESSERA_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<SecretString>,

    /// Worker threads of the public listener, each with its own runtime, listening
    /// socket (`SO_REUSEPORT`) and upstream connection pools; 0 means one per available
    /// core. The admin listener and background work run on the main thread.
    #[arg(long, env = "TESSERA_GATEWAY_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// How long a client connection may stay idle between requests before the gateway
    /// closes it (as nginx's `keepalive_timeout`, 75 s there too). A head begun gets the
    /// request timeout instead.
    #[arg(long, env = "TESSERA_CLIENT_IDLE_TIMEOUT_SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..))]
    pub client_idle_timeout_secs: u64,

    /// Most clients the local backend tracks at once (memory bound).
    #[arg(long, env = "TESSERA_RATE_LIMIT_MAX_KEYS", default_value_t = 1_000_000)]
    pub rate_limit_max_keys: usize,
}

/// Rate-limit counter store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LimiterBackend {
    /// In this process: each replica has its own budget.
    Local,
    /// In Redis: every replica shares one budget.
    Redis,
}
