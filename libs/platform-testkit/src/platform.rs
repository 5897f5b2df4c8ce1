//! The real identity and logging services, each on a runtime of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Parser;
use serde_json::{Value, json};
use service_kit::{CancellationToken, Listeners, SystemClock};
use tempfile::TempDir;
use tessera_identity::state::AppState;

use crate::on_own_runtime;

/// The client-secret pepper the harness's identity hashes registered secrets with.
const PEPPER: [u8; 32] = [5; 32];

/// How long a service may take to report ready: generous, as the machine running the
/// tests is shared.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A service's public and admin base URLs (`http://127.0.0.1:port`).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub base: String,
    pub admin: String,
}

/// Listeners on free loopback ports, and their base URLs.
pub async fn loopback() -> (Listeners, Endpoints) {
    let listeners = Listeners::loopback().await.expect("bind");
    let base = format!("http://{}", listeners.public_addr().expect("addr"));
    let admin = format!("http://{}", listeners.admin_addr().expect("addr"));
    (listeners, Endpoints { base, admin })
}

/// Spawns `serve` on listeners on free loopback ports and waits until the service
/// reports ready on its admin listener; returns its base URLs.
pub async fn serve_on_loopback<F, Fut>(serve: F) -> Endpoints
where
    F: FnOnce(Listeners) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let (listeners, endpoints) = loopback().await;
    tokio::spawn(serve(listeners));
    testkit::wait_until_ready(&endpoints.admin, READY_TIMEOUT).await;
    endpoints
}

/// Identity (with the service under test registered as a `service` client) and logging
/// (trusting identity's keys), both ready, each on a runtime of its own.
#[derive(Debug)]
pub struct Platform {
    /// Identity's public base URL.
    pub identity: String,
    /// Logging, ready, trusting identity's keys.
    pub logging: Logging,
    /// A token with the `admin` role, to read logs.
    pub reader: String,
    shutdown: CancellationToken,
    _dir: TempDir,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Platform {
    /// Starts identity (SQLite) issuing tokens as `issuer`, with `client_id` / `secret`
    /// registered as a `service` client, then logging trusting its keys.
    pub async fn start(issuer: &str, client_id: &str, secret: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, issuer_owned) = (dir.path().to_owned(), issuer.to_owned());
        let (client_id, secret) = (client_id.to_owned(), secret.to_owned());
        let ((identity, reader), shutdown) = on_own_runtime(move |stop| async move {
            let (base, state) =
                start_identity(&path, &issuer_owned, &client_id, &secret, &stop).await;
            // Signing keys are loaded once it is ready.
            (base, admin_token(&state))
        })
        .await;
        let logging = Logging::start(&identity, issuer, None).await;
        testkit::wait_until_ready(&logging.admin, READY_TIMEOUT).await;
        Self {
            identity,
            logging,
            reader,
            shutdown,
            _dir: dir,
        }
    }
}

/// Starts identity (SQLite in `dir`) issuing tokens as `issuer`, with `client_id` /
/// `secret` registered as a `service` client, and waits until it is ready; returns its
/// public base URL and its state (to sign tokens with).
pub async fn start_identity(
    dir: &Path,
    issuer: &str,
    client_id: &str,
    secret: &str,
    stop: &CancellationToken,
) -> (String, AppState) {
    let hash = tessera_identity::secrets::SecretHasher::new(&PEPPER).hash(secret);
    let registry = json!({ "clients": [{
        "client_id": client_id,
        "secret_hash": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash),
        "roles": ["service"],
    }] });
    let registry_file = dir.join("clients.json");
    std::fs::write(&registry_file, registry.to_string()).expect("write registry");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let config = tessera_identity::config::Cli::try_parse_from([
        "tessera-identity",
        "--issuer",
        issuer,
        "--database-url",
        &format!("sqlite:{}", dir.join("identity.db").display()),
        // Cheap password hashing (production uses 19 MiB, 2 passes): tests sign users up
        // by the dozen on a shared machine.
        "--argon2-memory-kib",
        "256",
        "--argon2-iterations",
        "1",
        "--keyset-encryption-key",
        &b64(&[42; 32]),
        "--client-registry",
        &registry_file.display().to_string(),
        "--client-secret-pepper",
        &b64(&PEPPER),
    ])
    .expect("valid identity config")
    .config;
    let identity = tessera_identity::build(&config, tessera_identity::Runtime::default(), stop)
        .expect("identity builds");
    let state = identity.state.clone();
    let endpoints =
        serve_on_loopback(|listeners| identity.service.serve(listeners, stop.clone())).await;
    (endpoints.base, state)
}

/// A token identity signs for a logging reader (role `admin`).
pub fn admin_token(identity: &AppState) -> String {
    identity
        .tokens
        .issue("log-reader", &["admin".to_owned()], None)
        .expect("a signing key is loaded")
        .access_token
}

/// The logging service (SQLite), on a thread and runtime of its own.
#[derive(Debug)]
pub struct Logging {
    pub base: String,
    pub admin: String,
    shutdown: CancellationToken,
    _dir: TempDir,
}

impl Drop for Logging {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Logging {
    /// Starts logging trusting the keys of identity at `identity` (issuing as `issuer`),
    /// consuming audit events from `bus` when given. Does not wait for readiness:
    /// identity may not be serving its JWKS yet.
    pub async fn start(
        identity: &str,
        issuer: &str,
        bus: Option<tessera_events::NatsConfig>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let database: PathBuf = dir.path().join("logging.db");
        let config = tessera_logging::config::Config::try_parse_from([
            "tessera-logging",
            "--database-url",
            &format!("sqlite:{}", database.display()),
            "--jwks-url",
            &format!("{identity}/.well-known/jwks.json"),
            "--issuer",
            issuer,
        ])
        .expect("valid logging config");
        let (endpoints, shutdown) = on_own_runtime(move |stop| async move {
            let bus = match bus {
                Some(nats) => Some(tessera_events::Bus::JetStream(
                    tessera_events::JetStreamBus::connect(nats)
                        .await
                        .expect("logging connects to NATS"),
                )),
                None => None,
            };
            let runtime = tessera_logging::Runtime {
                clock: Arc::new(SystemClock),
                bus,
            };
            let logging = tessera_logging::build(&config, runtime, &stop).expect("logging builds");
            let (listeners, endpoints) = loopback().await;
            tokio::spawn(logging.service.serve(listeners, stop));
            endpoints
        })
        .await;
        Self {
            base: endpoints.base,
            admin: endpoints.admin,
            shutdown,
            _dir: dir,
        }
    }

    /// `GET path` on logging's public API with `token`, asserting a 200 JSON answer.
    pub async fn get(&self, path: &str, token: &str) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("json")
    }
}
