//! What a verifier accepts: issuer, audiences, clock leeway, size limit, and how often the
//! key set is fetched; and the command-line flags that set them.

use std::time::Duration;

/// Clock skew tolerated on `exp`, `nbf` and `iat`: small (RFC 8725 §3.10), but enough for
/// pods whose clocks drift by a few seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Largest token accepted. Tessera tokens are well under 1 KiB; 8 KiB is also the usual
/// header-size limit of proxies, so anything bigger is an attack or a bug.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;

/// JWKS cache lifetime. Key rotation pre-publishes keys for at least this long
/// (DESIGN.md §4), and ZITADEL and Envoy use the same order of magnitude.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_mins(5);

/// Least time between two fetches caused by unknown `kid`s, so a flood of forged tokens
/// cannot turn every service into a load generator against identity.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// Verified tokens remembered until they expire. About 1 KiB each, so 10 MiB at most; a
/// gateway serving more active clients than this verifies the rest each time.
pub const DEFAULT_VERIFIED_CACHE_ENTRIES: usize = 10_000;

/// What a [`Verifier`](crate::Verifier) accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// The only accepted `iss`.
    pub issuer: String,
    /// A token is accepted when its `aud` names at least one of these.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Tokens longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    /// How often the key set is fetched in the background (the cache lifetime).
    pub refresh_interval: Duration,
    /// Least time between two fetches triggered by an unknown `kid`.
    pub min_refetch_interval: Duration,
    /// How many verified tokens are remembered until they expire (`0`: none).
    pub verified_cache_entries: usize,
}

impl VerifierConfig {
    /// A configuration with the default leeway, size limit and refresh intervals.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            verified_cache_entries: DEFAULT_VERIFIED_CACHE_ENTRIES,
        }
    }
}

/// The command-line settings of a service that checks access tokens (profile,
/// notification): flatten into its clap config.
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

impl AuthArgs {
    /// The verifier settings these flags ask for (defaults for the rest).
    pub fn verifier_config(&self) -> VerifierConfig {
        let mut config = VerifierConfig::new(self.issuer.clone(), self.audiences.clone());
        config.refresh_interval = Duration::from_secs(self.jwks_refresh_secs);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_fills_in_the_documented_defaults() {
        let config = VerifierConfig::new("https://id.example", vec!["api".into()]);
        assert_eq!(config.leeway, Duration::from_secs(30));
        assert_eq!(config.max_token_bytes, 8192);
        assert_eq!(config.refresh_interval, Duration::from_secs(300));
        assert_eq!(config.min_refetch_interval, Duration::from_secs(5));
        assert_eq!(config.verified_cache_entries, 10_000);
    }

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        auth: AuthArgs,
    }

    #[test]
    fn flags_set_issuer_audiences_and_refresh_interval() {
        use clap::Parser as _;
        let flags = Flags::try_parse_from([
            "service",
            "--jwks-url=http://identity/.well-known/jwks.json",
            "--issuer=https://id.example",
            "--audiences=api,admin",
            "--jwks-refresh-secs=60",
        ])
        .expect("valid flags");
        let config = flags.auth.verifier_config();
        assert_eq!(config.issuer, "https://id.example");
        assert_eq!(config.audiences, ["api", "admin"]);
        assert_eq!(config.refresh_interval, Duration::from_secs(60));

        let zero = Flags::try_parse_from([
            "service",
            "--jwks-url=http://identity/.well-known/jwks.json",
            "--issuer=https://id.example",
            "--jwks-refresh-secs=0",
        ]);
        assert!(zero.is_err(), "a zero refresh interval is refused at start");
    }
}
