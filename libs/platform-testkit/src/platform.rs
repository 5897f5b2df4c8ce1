//! The real identity and logging services, each on a runtime of its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use service_kit::{CancellationToken, Listeners, SystemClock};
use tempfile::TempDir;

use crate::{ServiceClient, admin_token, on_own_runtime, start_identity};

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
            let client = ServiceClient {
                id: &client_id,
                secret: &secret,
                roles: &["service"],
            };
            let (base, state) = start_identity(&path, &issuer_owned, &[client], &stop).await;
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
