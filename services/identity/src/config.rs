//! Identity's settings: the public contract with the operator and the Helm chart. Every
//! flag has a `TESSERA_*` environment fallback; secrets are never shown by `--help`.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use service_kit::{DatabaseArgs, HttpArgs, LogShippingArgs, TelemetryArgs};
use tessera_keys::Algorithm;

/// `tessera-identity` command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "tessera-identity",
    version,
    about = "Tessera identity: users, clients, tokens, keys"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    /// Without a subcommand, the service runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One-off administration commands, run against the same database as the service.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCommand),
}

/// `tessera-identity admin ...`
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Grant the `admin` role to an existing user.
    Grant {
        /// The user's email address.
        email: String,
    },
}

/// Everything the identity service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// `--log-endpoint`: ship logs to the logging service, with a service token identity
    /// signs for itself (see [`crate::SelfIssuedToken`]).
    #[command(flatten)]
    pub log_shipping: LogShippingArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub accounts: AccountArgs,
    /// `--nats-url`: where the outbox is relayed (without it, events wait in the table).
    #[command(flatten)]
    pub events: tessera_events::NatsArgs,
}

/// What goes into tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The `iss` of every token and the base of the discovery document, e.g.
    /// `https://api.example.com` (what clients see through the gateway).
    #[arg(long, env = "TESSERA_ISSUER", value_name = "URL", value_parser = parse_issuer)]
    pub issuer: String,

    /// Audiences (`aud`) put in access tokens, comma-separated; verifiers accept these.
    #[arg(
        long,
        env = "TESSERA_AUDIENCES",
        value_delimiter = ',',
        default_value = "tessera"
    )]
    pub audiences: Vec<String>,

    /// Access-token lifetime in seconds.
    #[arg(long, env = "TESSERA_ACCESS_TOKEN_TTL_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(30..=86_400))]
    pub access_token_ttl_secs: u64,

    /// Refresh-token lifetime in seconds (each rotation issues a token with this lifetime).
    #[arg(long, env = "TESSERA_REFRESH_TOKEN_TTL_SECS", default_value_t = 14 * 86_400,
          value_parser = clap::value_parser!(u64).range(60..=365 * 86_400))]
    pub refresh_token_ttl_secs: u64,

    /// Seconds during which a just-rotated refresh token may be presented again (concurrent
    /// refreshes by one client) without revoking its family.
    #[arg(long, env = "TESSERA_REFRESH_REUSE_GRACE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub refresh_reuse_grace_secs: u64,
}

/// Where signing keys come from and how they rotate.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Directory holding `keyset.json` written by the operator (a mounted Secret). When
    /// set, identity only reads keys, reloading the file when it changes. When unset,
    /// identity keeps its keyset in its database and rotates it itself.
    #[arg(long, env = "TESSERA_KEYSET_DIR", value_name = "DIR")]
    pub keyset_dir: Option<PathBuf>,

    /// Standalone mode: 32-byte key (base64) sealing the keyset in the database.
    #[arg(
        long,
        env = "TESSERA_KEYSET_ENCRYPTION_KEY",
        value_name = "BASE64",
        hide_env_values = true
    )]
    pub keyset_encryption_key: Option<SecretString>,

    /// Standalone mode: algorithm of newly generated keys.
    #[arg(long, env = "TESSERA_KEY_ALGORITHM", default_value = "EdDSA",
          value_parser = ["EdDSA", "ES256", "RS256"])]
    pub key_algorithm: String,

    /// Standalone mode: seconds a key signs before the next one takes over.
    #[arg(long, env = "TESSERA_KEY_ROTATION_INTERVAL_SECS", default_value_t = 7 * 86_400,
          value_parser = clap::value_parser!(u64).range(60..))]
    pub key_rotation_interval_secs: u64,

    /// `Cache-Control: max-age` of the JWKS; verifiers may use a key set this old.
    #[arg(long, env = "TESSERA_JWKS_MAX_AGE_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub jwks_max_age_secs: u64,

    /// Time for a new key to reach every identity replica (standalone: their reload period).
    #[arg(long, env = "TESSERA_KEY_PROPAGATION_SECS", default_value_t = 60)]
    pub key_propagation_secs: u64,

    /// Clock skew tolerated between issuers and verifiers, in seconds.
    #[arg(long, env = "TESSERA_CLOCK_LEEWAY_SECS", default_value_t = 60)]
    pub clock_leeway_secs: u64,
}

/// Users and service clients.
#[derive(Debug, Clone, clap::Args)]
pub struct AccountArgs {
    /// Emails that get the `admin` role when they sign up or log in, comma-separated.
    #[arg(long, env = "TESSERA_BOOTSTRAP_ADMINS", value_delimiter = ',')]
    pub bootstrap_admins: Vec<String>,

    /// Client registry file (JSON) mounted by the operator; reloaded when it changes.
    #[arg(long, env = "TESSERA_CLIENT_REGISTRY", value_name = "FILE")]
    pub client_registry: Option<PathBuf>,

    /// Key (base64, 32 bytes) of the keyed hash of client secrets. Required with a client
    /// registry (the operator hashes with it); otherwise derived from the keyset
    /// encryption key.
    #[arg(
        long,
        env = "TESSERA_CLIENT_SECRET_PEPPER",
        value_name = "BASE64",
        hide_env_values = true
    )]
    pub client_secret_pepper: Option<SecretString>,

    /// Argon2id memory cost in KiB (OWASP: 19456 with 2 iterations).
    #[arg(long, env = "TESSERA_ARGON2_MEMORY_KIB", default_value_t = 19_456,
          value_parser = clap::value_parser!(u32).range(8..=4 * 1024 * 1024))]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations.
    #[arg(long, env = "TESSERA_ARGON2_ITERATIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub argon2_iterations: u32,

    /// Password hashes computed at once (each uses the Argon2 memory); 0 = CPU count.
    #[arg(long, env = "TESSERA_PASSWORD_HASH_CONCURRENCY", default_value_t = 0)]
    pub password_hash_concurrency: usize,

    /// Trust the last `X-Forwarded-For` entry as the client address (set this when
    /// identity is reachable only through the gateway, which appends it).
    #[arg(long, env = "TESSERA_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Login attempts per account in the lockout window (an address gets 20 times more).
    #[arg(long, env = "TESSERA_LOGIN_MAX_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub login_max_failures: u32,

    /// Lockout window in seconds: failures older than this are forgotten.
    #[arg(long, env = "TESSERA_LOGIN_LOCKOUT_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub login_lockout_secs: u64,
}

impl KeyArgs {
    /// The rotation policy derived from lifetimes and cache settings (DESIGN.md §4).
    pub fn policy(&self, tokens: &TokenArgs) -> tessera_keys::KeyPolicy {
        tessera_keys::KeyPolicy::derived(
            self.key_algorithm.parse().unwrap_or(Algorithm::EdDSA),
            Duration::from_secs(self.key_rotation_interval_secs),
            Duration::from_secs(tokens.access_token_ttl_secs),
            Duration::from_secs(self.jwks_max_age_secs),
            Duration::from_secs(self.key_propagation_secs),
            Duration::from_secs(self.clock_leeway_secs),
        )
    }
}

fn parse_issuer(value: &str) -> Result<String, String> {
    let trimmed = value.trim_end_matches('/');
    if !(trimmed.starts_with("https://") || trimmed.starts_with("http://")) {
        return Err("expected an http(s) URL such as https://api.example.com".to_owned());
    }
    if trimmed.contains(['?', '#']) {
        return Err("the issuer must not have a query or fragment".to_owned());
    }
    Ok(trimmed.to_owned())
}
