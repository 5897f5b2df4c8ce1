//! Tessera identity: the platform's trust anchor (DESIGN.md §3–4).
//!
//! Users sign up and log in (Argon2id passwords, throttled), get RFC 9068 access tokens
//! and rotating refresh tokens; service clients use `client_credentials`. Tokens are
//! signed with the active key of a keyset that either the operator mounts
//! (`--keyset-dir`) or identity keeps and rotates itself in its database (standalone).
//! Audit records and `user.registered` go to a transactional outbox, relayed to NATS
//! JetStream by `tessera-events` when `--nats-url` is set.
//!
//! The library exposes [`build`] (the service ready to serve) and [`run`]; the binary
//! only parses the command line.

pub mod api;
pub mod audit;
pub mod clients;
pub mod config;
pub mod db;
pub mod email;
pub mod events;
pub mod keys;
pub mod password;
pub mod secrets;
pub mod state;
pub mod throttle;
pub mod tokens;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use service_kit::log_shipping::{Shipper, TokenSource};
use service_kit::{CancellationToken, Clock, Database, Listeners, Service, SystemClock};
use tessera_auth::{StaticJwks, Verifier, VerifierConfig};

use crate::config::Config;
use crate::state::{AppState, Settings};

/// How identity is wired beyond its config: the clock and how often standalone key
/// rotation looks at the keyset (tests shorten both).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub clock: Arc<dyn Clock>,
    pub key_check_interval: Duration,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            key_check_interval: Duration::from_secs(30),
        }
    }
}

/// Why identity cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is missing or wrong; the message names it.
    #[error("configuration error: {0}")]
    Config(String),
    /// The database could not be prepared.
    #[error(transparent)]
    Db(#[from] service_kit::db::DbError),
    /// The client registry file is unreadable or invalid.
    #[error(transparent)]
    Registry(#[from] clients::RegistryError),
}

/// Identity, built and ready to serve.
#[derive(Debug)]
pub struct Identity {
    pub service: Service,
    pub state: AppState,
}

fn decode_key(value: &SecretString, setting: &str) -> Result<[u8; 32], StartError> {
    STANDARD
        .decode(value.expose_secret().trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            StartError::Config(format!(
                "{setting} must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)"
            ))
        })
}

/// The client-secret pepper derived from the keyset encryption key when none is set.
fn derived_pepper(seal_key: &[u8; 32]) -> [u8; 32] {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, seal_key);
    let tag = aws_lc_rs::hmac::sign(&key, b"tessera identity client-secret pepper v1");
    let mut pepper = [0u8; 32];
    pepper.copy_from_slice(tag.as_ref());
    pepper
}

/// The keyset sealing key (standalone mode) and the client-secret pepper, from config.
fn secrets_from(config: &Config) -> Result<(Option<[u8; 32]>, [u8; 32]), StartError> {
    let keys_cfg = &config.keys;
    let seal_key = keys_cfg
        .keyset_encryption_key
        .as_ref()
        .map(|k| decode_key(k, "TESSERA_KEYSET_ENCRYPTION_KEY"))
        .transpose()?;
    if keys_cfg.keyset_dir.is_none() && seal_key.is_none() {
        return Err(StartError::Config(
            "set --keyset-dir (keys mounted by the operator) or TESSERA_KEYSET_ENCRYPTION_KEY (standalone: 32 bytes, base64)".into(),
        ));
    }
    let pepper = match (&config.accounts.client_secret_pepper, seal_key) {
        (Some(pepper), _) => decode_key(pepper, "TESSERA_CLIENT_SECRET_PEPPER")?,
        (None, Some(seal_key)) if config.accounts.client_registry.is_none() => {
            derived_pepper(&seal_key)
        }
        (None, _) => {
            return Err(StartError::Config(
                "TESSERA_CLIENT_SECRET_PEPPER is required with a client registry (it keys the secret hashes)".into(),
            ));
        }
    };
    Ok((seal_key, pepper))
}

/// Feeds `manager` from the mounted keyset file, or (standalone) from the database where
/// identity rotates its own keys once the migrations have run.
fn start_key_source(
    config: &Config,
    runtime: &Runtime,
    database: &Database,
    key_manager: &Arc<keys::KeyManager>,
    audit: &audit::AuditLog,
    seal_key: Option<[u8; 32]>,
    shutdown: &CancellationToken,
) {
    let (keys_cfg, tokens_cfg, pool) = (&config.keys, &config.tokens, database.pool().clone());
    match (&keys_cfg.keyset_dir, seal_key) {
        (Some(dir), _) => keys::watch_mounted(key_manager.clone(), dir, shutdown.clone()),
        (None, Some(seal_key)) => {
            let standalone = keys::Standalone {
                manager: key_manager.clone(),
                pool: pool.clone(),
                seal_key,
                policy: keys_cfg.policy(tokens_cfg),
                clock: runtime.clock.clone(),
                audit: audit.clone(),
            };
            // Rotation needs the keyset table: start once the migrations have run.
            let (migrated, check_every, stop) = (
                database.clone(),
                runtime.key_check_interval,
                shutdown.clone(),
            );
            tokio::spawn(async move {
                migrated.wait_migrated().await;
                if migrated.is_migrated() {
                    standalone.spawn(check_every, stop);
                }
            });
        }
        (None, None) => unreachable!("checked above"),
    }
}

/// Builds identity: database (migrated in the background), key source, client registry,
/// and the service with its routes and readiness checks. Background tasks stop with
/// `shutdown`.
pub fn build(
    config: &Config,
    runtime: Runtime,
    shutdown: &CancellationToken,
) -> Result<Identity, StartError> {
    let (seal_key, pepper) = secrets_from(config)?;
    let keys_cfg = &config.keys;

    let database = Database::open(
        &config.database.database_url,
        config.database.database_max_connections,
        db::migrations(),
        shutdown.clone(),
    )?;
    let pool = database.pool().clone();
    let tokens_cfg = &config.tokens;
    let verifier_keys = Arc::new(StaticJwks::new(jsonwebtoken_empty_set()));
    let verifier = Verifier::with_clock(
        VerifierConfig::new(tokens_cfg.issuer.clone(), tokens_cfg.audiences.clone()),
        verifier_keys.clone(),
        runtime.clock.clone(),
    );
    let key_manager = keys::KeyManager::new(verifier_keys, verifier.clone());
    let audit = audit::AuditLog::spawn(pool.clone());
    start_key_source(
        config,
        &runtime,
        &database,
        &key_manager,
        &audit,
        seal_key,
        shutdown,
    );

    let clients = clients::ClientRegistry::new(secrets::SecretHasher::new(&pepper), pool.clone());
    if let Some(path) = &config.accounts.client_registry {
        clients::watch_registry(clients.clone(), path.clone(), shutdown.clone())?;
    }
    let accounts = &config.accounts;
    let passwords = password::PasswordHashing::new(
        accounts.argon2_memory_kib,
        accounts.argon2_iterations,
        accounts.password_hash_concurrency,
    )
    .map_err(|e| StartError::Config(format!("Argon2 parameters: {e}")))?;
    let lockout = Duration::from_secs(accounts.login_lockout_secs);
    let state = AppState {
        pool,
        passwords,
        account_throttle: Arc::new(throttle::LoginThrottle::new(
            accounts.login_max_failures,
            lockout,
        )),
        address_throttle: Arc::new(throttle::LoginThrottle::new(
            accounts.login_max_failures.saturating_mul(20),
            lockout,
        )),
        keys: key_manager.clone(),
        tokens: tokens::TokenIssuer {
            keys: key_manager.clone(),
            issuer: tokens_cfg.issuer.clone(),
            audiences: tokens_cfg.audiences.clone(),
            access_ttl: Duration::from_secs(tokens_cfg.access_token_ttl_secs),
            clock: runtime.clock.clone(),
        },
        verifier,
        clients,
        audit,
        clock: runtime.clock,
        settings: Arc::new(Settings {
            issuer: tokens_cfg.issuer.clone(),
            refresh_ttl: Duration::from_secs(tokens_cfg.refresh_token_ttl_secs),
            refresh_grace: Duration::from_secs(tokens_cfg.refresh_reuse_grace_secs),
            jwks_max_age: Duration::from_secs(keys_cfg.jwks_max_age_secs),
            bootstrap_admins: accounts
                .bootstrap_admins
                .iter()
                .filter_map(|e| email::Email::parse(e).ok())
                .map(|e| e.to_string())
                .collect::<HashSet<_>>(),
            trust_forwarded_for: accounts.trust_forwarded_for,
            signing_algorithm: keys_cfg.key_algorithm.clone(),
        }),
    };
    let service = Service::new("identity", config.http.settings())
        .public(api::router(state.clone()))
        .admin(api::admin_router(state.clone()));
    database.add_readiness_check(service.readiness());
    start_relay(config, &database, &service, shutdown);
    service
        .readiness()
        .add_flag("keys", "no signing key loaded yet", move || {
            key_manager.is_ready()
        });
    Ok(Identity { service, state })
}

/// With `--nats-url`, relays the outbox to JetStream (a `bus` readiness check and the
/// `tessera_events_*` metrics come with it); without, rows wait in the table.
fn start_relay(
    config: &Config,
    database: &Database,
    service: &Service,
    shutdown: &CancellationToken,
) {
    let Some(nats) = config.events.config("identity") else {
        return;
    };
    // Identity's writers do not poke the relay; it polls the outbox every second.
    let metrics = tessera_events::EventMetrics::new();
    metrics.register(service.metrics());
    tessera_events::spawn_jetstream_relay(
        nats,
        database.clone(),
        tessera_events::RelayConfig::default(),
        metrics,
        service.readiness(),
        shutdown.clone(),
    );
}

fn jsonwebtoken_empty_set() -> jsonwebtoken::jwk::JwkSet {
    jsonwebtoken::jwk::JwkSet { keys: Vec::new() }
}

/// Runs identity on `listeners` until `shutdown`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    run_shipping_logs(config, listeners, shutdown, None).await
}

/// Like [`run`], with the log shipper `telemetry::init_with_shipping_token` started
/// (when `--log-endpoint` is set) and the token source it was given.
pub async fn run_shipping_logs(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    shipping: Option<(Shipper, Arc<SelfIssuedToken>)>,
) -> Result<(), StartError> {
    let identity = build(&config, Runtime::default(), &shutdown)?;
    if let Some((shipper, token)) = &shipping {
        identity.attach_log_shipping(shipper, token);
    }
    identity.service.serve(listeners, shutdown).await;
    Ok(())
}

/// Subject, client id and only role of the token identity ships its logs with.
pub const LOG_SHIPPING_CLIENT: &str = "identity";
const SERVICE_ROLE: &str = "service";

/// Share of a token's lifetime after which a new one is signed (as the
/// client-credentials source does), leaving room for clock skew.
const RENEW_AT_FRACTION: f64 = 0.8;

/// The service token identity sends with its shipped logs. Identity is the issuer, so it
/// signs one in process with its active key (subject and `client_id` `identity`, role
/// `service`) instead of calling its own `/oauth2/token`: no client secret to configure,
/// and no dependency on its own listener. Empty until [`Identity::attach_log_shipping`]
/// (the shipper starts before the keys are loaded); until then, or while no key is
/// loaded, batches go without a token and logging's 401 makes the shipper retry.
#[derive(Default)]
pub struct SelfIssuedToken {
    issuer: OnceLock<tokens::TokenIssuer>,
    cached: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for SelfIssuedToken {
    // Never the token itself: Debug output may end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfIssuedToken")
            .field("attached", &self.issuer.get().is_some())
            .finish_non_exhaustive()
    }
}

impl SelfIssuedToken {
    /// A current token, signing a new one when none is cached or it is due for renewal.
    pub fn current(&self) -> Option<String> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Some(token.clone());
        }
        let issued = self
            .issuer
            .get()?
            .issue(
                LOG_SHIPPING_CLIENT,
                &[SERVICE_ROLE.to_owned()],
                Some(LOG_SHIPPING_CLIENT),
            )
            .ok()?;
        let renew_after = Duration::from_secs(issued.expires_in).mul_f64(RENEW_AT_FRACTION);
        *cached = Some((issued.access_token.clone(), Instant::now() + renew_after));
        Some(issued.access_token)
    }
}

impl TokenSource for SelfIssuedToken {
    fn token(&self) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        Box::pin(std::future::ready(self.current()))
    }
}

impl Identity {
    /// Registers the shipper's `tessera_log_shipping_*` counters in this service's
    /// metrics and lets `token` sign with this identity's keys.
    pub fn attach_log_shipping(&self, shipper: &Shipper, token: &SelfIssuedToken) {
        shipper.register_metrics(self.service.metrics());
        // A second attach (not done by the binary) keeps the first issuer: same keys.
        let _ = token.issuer.set(self.state.tokens.clone());
    }
}

/// `tessera-identity admin grant <email>`: adds the admin role to an existing user.
pub async fn grant_admin(config: &Config, email: &str) -> Result<String, StartError> {
    let email =
        email::Email::parse(email).map_err(|e| StartError::Config(format!("email: {e}")))?;
    let database = Database::open_now(&config.database.database_url, 1, &db::migrations()).await?;
    let pool = database.pool();
    let db_error = |e: sqlx::Error| StartError::Db(service_kit::db::DbError::Sqlx(e));
    let user = db::users::by_email(pool, email.as_str())
        .await
        .map_err(db_error)?;
    let Some(mut user) = user else {
        return Err(StartError::Config(format!("no user has the email {email}")));
    };
    if user.roles.iter().any(|r| r == api::users::ADMIN_ROLE) {
        return Ok(format!("{email} already has the admin role"));
    }
    user.roles.push(api::users::ADMIN_ROLE.to_owned());
    db::users::set_roles(pool, &user.id, &user.roles)
        .await
        .map_err(db_error)?;
    pool.close().await;
    Ok(format!("granted admin to {email}"))
}
