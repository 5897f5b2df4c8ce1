//! The services under test, in this process on loopback: identity (only for
//! notification's client-credentials token), a JWKS server holding identity's keys and
//! the benchmark's own user-token key, profile and notification (the real SMTP server is
//! `testkit::SmtpServer`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use clap::Parser as _;
use serde_json::{Value, json};
use service_kit::{CancellationToken, Listeners, SystemClock};
use tessera_auth::{AccessClaims, Audience};
use tessera_events::{Bus, JetStreamBus, NatsConfig};
use tessera_keys::{Algorithm, KeyState, SigningKey};
use time::OffsetDateTime;

pub(crate) const ISSUER: &str = "http://issuer.bench";
const PEPPER: [u8; 32] = [7; 32];
const CLIENT: &str = "svc-notification";
const SECRET: &str = "a-service-secret-of-sufficient-length";

/// Signs user tokens the way identity would, with a key the JWKS server publishes: the
/// benchmark measures profile creation, not identity's logins.
pub(crate) struct Tokens {
    key: SigningKey,
    pub(crate) jwk: Value,
}

impl Tokens {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let key = tessera_keys::generate(Algorithm::EdDSA)
            .context("generate key")?
            .into_key(KeyState::Active, OffsetDateTime::now_utc());
        let jwk = serde_json::to_value(key.public_jwk().context("public jwk")?)?;
        Ok(Self {
            key: SigningKey::from_key(&key).context("load key")?,
            jwk,
        })
    }

    /// An access token of a new user, valid for an hour.
    pub(crate) fn user(&self, sub: &str) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            iss: ISSUER.to_owned(),
            sub: sub.to_owned(),
            aud: Audience::single("tessera"),
            exp: now + 3600,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::now_v7().to_string(),
            roles: vec![],
            client_id: None,
        };
        self.key.sign(&claims).context("sign user token")
    }
}

/// Identity on SQLite with notification's service client; returns its base URL.
pub(crate) async fn start_identity(
    dir: &Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<String> {
    let hasher = tessera_identity::secrets::SecretHasher::new(&PEPPER);
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.hash(SECRET));
    let registry = json!({ "clients": [
        { "client_id": CLIENT, "secret_hash": hash, "roles": ["service"] },
    ]});
    let registry_path = dir.join("clients.json");
    std::fs::write(&registry_path, registry.to_string())?;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let config = tessera_identity::config::Cli::try_parse_from([
        "tessera-identity".to_owned(),
        "--issuer".into(),
        ISSUER.into(),
        "--database-url".into(),
        format!("sqlite:{}", dir.join("identity.db").display()),
        "--keyset-encryption-key".into(),
        b64(&[42; 32]),
        "--client-registry".into(),
        registry_path.display().to_string(),
        "--client-secret-pepper".into(),
        b64(&PEPPER),
    ])
    .context("identity config")?
    .config;
    let identity = tessera_identity::build(&config, tessera_identity::Runtime::default(), shutdown)
        .context("identity builds")?;
    let listeners = Listeners::loopback().await?;
    let base = format!("http://{}", listeners.public_addr()?);
    let admin = format!("http://{}", listeners.admin_addr()?);
    tokio::spawn(identity.service.serve(listeners, shutdown.clone()));
    testkit::wait_until_ready(&admin, Duration::from_secs(30)).await;
    Ok(base)
}

/// Serves identity's keys plus the user-token key as one JWKS; returns its URL.
pub(crate) async fn start_jwks(
    identity: &str,
    tokens: &Tokens,
    shutdown: &CancellationToken,
) -> anyhow::Result<String> {
    let mut set: Value = reqwest::get(format!("{identity}/.well-known/jwks.json"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    set["keys"]
        .as_array_mut()
        .context("identity's JWKS has keys")?
        .push(tokens.jwk.clone());
    let set = Arc::new(set);
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let set = set.clone();
            async move { axum::Json((*set).clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/jwks.json", listener.local_addr()?);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    Ok(url)
}

/// A private stream and subject root on the NATS server.
pub(crate) fn nats_config(url: &str, service: &str, id: &str) -> NatsConfig {
    let mut config = NatsConfig::new(url, service);
    config.stream = format!("BENCH{id}");
    config.subject_root = format!("bench{id}");
    config
}

/// Profile on `database_url` publishing on stream `nats_id`; returns its base URL.
pub(crate) async fn start_profile(
    database_url: String,
    jwks: &str,
    nats_url: &str,
    nats_id: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<String> {
    let config = tessera_profile::config::Config::try_parse_from([
        "tessera-profile".to_owned(),
        "--database-url".into(),
        database_url,
        "--issuer".into(),
        ISSUER.into(),
        "--jwks-url".into(),
        jwks.to_owned(),
        "--nats-url".into(),
        nats_url.to_owned(),
    ])
    .context("profile config")?;
    let bus = JetStreamBus::connect(nats_config(nats_url, "profile", nats_id))
        .await
        .context("profile's bus")?;
    let runtime = tessera_profile::Runtime {
        clock: Arc::new(SystemClock),
        bus: Bus::JetStream(bus),
    };
    let profile = tessera_profile::build(&config, runtime, shutdown).context("profile builds")?;
    let listeners = Listeners::loopback().await?;
    let base = format!("http://{}", listeners.public_addr()?);
    let admin = format!("http://{}", listeners.admin_addr()?);
    tokio::spawn(profile.service.serve(listeners, shutdown.clone()));
    testkit::wait_until_ready(&admin, Duration::from_secs(30)).await;
    Ok(base)
}

pub(crate) struct NotificationSetup<'a> {
    pub(crate) database_url: String,
    pub(crate) jwks: &'a str,
    pub(crate) identity: &'a str,
    pub(crate) profile: &'a str,
    pub(crate) nats_url: &'a str,
    pub(crate) nats_id: &'a str,
    pub(crate) smtp_port: u16,
    pub(crate) workers: u32,
}

/// Notification with no email rate limit, consuming stream `nats_id`; returns its admin
/// listener's base URL (`/metrics`).
pub(crate) async fn start_notification(
    setup: &NotificationSetup<'_>,
    shutdown: &CancellationToken,
) -> anyhow::Result<String> {
    let args: Vec<String> = [
        "tessera-notification",
        "--database-url",
        &setup.database_url,
        "--issuer",
        ISSUER,
        "--jwks-url",
        setup.jwks,
        "--nats-url",
        setup.nats_url,
        "--profile-url",
        setup.profile,
        "--token-url",
        &format!("{}/oauth2/token", setup.identity),
        "--client-id",
        CLIENT,
        "--client-secret",
        SECRET,
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &setup.smtp_port.to_string(),
        "--smtp-tls",
        "none",
        "--email-from",
        "Tessera Bench <bench@tessera.test>",
        // The benchmark measures the path, not the configured pacing.
        "--email-rate-per-sec",
        "0",
        "--delivery-workers",
        &setup.workers.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let config = tessera_notification::config::Config::try_parse_from(&args)
        .context("notification config")?;
    let bus = JetStreamBus::connect(nats_config(setup.nats_url, "notification", setup.nats_id))
        .await
        .context("notification's bus")?;
    let runtime = tessera_notification::Runtime {
        clock: Arc::new(SystemClock),
        bus: Bus::JetStream(bus),
    };
    let service =
        tessera_notification::build(&config, runtime, shutdown).context("notification builds")?;
    let listeners = Listeners::loopback().await?;
    let admin = format!("http://{}", listeners.admin_addr()?);
    tokio::spawn(service.service.serve(listeners, shutdown.clone()));
    testkit::wait_until_ready(&admin, Duration::from_secs(30)).await;
    Ok(admin)
}
