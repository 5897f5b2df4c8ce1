//! Starting identity and profile for a test: identity on a SQLite file with two service
//! clients, profile on a fresh SQLite file or PostgreSQL database with the flags the
//! operator would pass, both on loopback ports.

use std::sync::Arc;

use clap::Parser;
use platform_testkit::{ServiceClient, serve_on_loopback};
use serde_json::{Value, json};
use service_kit::{CancellationToken, SystemClock};
use tessera_profile::state::AppState;

pub(crate) use testkit::{Backend, on_both_backends};

pub(crate) const ISSUER: &str = "http://issuer.test";
pub(crate) const SERVICE_CLIENT: &str = "svc-notification";
pub(crate) const SERVICE_SECRET: &str = "a-service-secret-of-sufficient-length";
pub(crate) const PLAIN_CLIENT: &str = "svc-other";

/// The clients identity registers: one with the `service` role, one without.
const CLIENTS: [ServiceClient<'static>; 2] = [
    ServiceClient {
        id: SERVICE_CLIENT,
        secret: SERVICE_SECRET,
        roles: &["service"],
    },
    ServiceClient {
        id: PLAIN_CLIENT,
        secret: SERVICE_SECRET,
        roles: &[],
    },
];

pub(crate) struct TestStack {
    pub(crate) identity: String,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) state: AppState,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestStack {
    pub(crate) async fn on(backend: Backend) -> Self {
        testkit::init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let shutdown = CancellationToken::new();
        let (identity, _) =
            platform_testkit::start_identity(dir.path(), ISSUER, &CLIENTS, &shutdown).await;
        let database_url = backend.database_url(dir.path(), "profile").await;
        let config = tessera_profile::config::Config::try_parse_from([
            "tessera-profile".to_owned(),
            "--database-url".into(),
            database_url,
            "--issuer".into(),
            ISSUER.into(),
            "--jwks-url".into(),
            format!("{identity}/.well-known/jwks.json"),
            "--nats-url".into(),
            "nats://127.0.0.1:1".into(),
        ])
        .expect("valid profile config");
        // An in-process bus nobody consumes: events stay visible in the outbox.
        let runtime = tessera_profile::Runtime {
            clock: Arc::new(SystemClock),
            bus: tessera_events::Bus::InProcess(tessera_events::InProcessBus::new()),
        };
        let profile = tessera_profile::build(&config, runtime, &shutdown).expect("profile builds");
        let state = profile.state.clone();
        let endpoints =
            serve_on_loopback(|listeners| profile.service.serve(listeners, shutdown.clone())).await;
        Self {
            identity,
            base: endpoints.base,
            http: reqwest::Client::new(),
            state,
            shutdown,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs a new user up at identity and logs in; returns (user id, access token).
    pub(crate) async fn user(&self, email: &str) -> (String, String) {
        platform_testkit::new_user(&self.http, &self.identity, email).await
    }

    /// A client-credentials token of `client_id`.
    pub(crate) async fn service_token(&self, client_id: &str) -> String {
        let client = CLIENTS
            .iter()
            .find(|client| client.id == client_id)
            .expect("a registered client");
        platform_testkit::service_token(&self.http, &self.identity, client).await
    }

    pub(crate) async fn create(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/profiles"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("send")
    }

    pub(crate) async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("send")
    }

    pub(crate) async fn patch(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .patch(self.url("/v1/profiles/me"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("send")
    }

    /// Every outbox row: (subject, event JSON).
    pub(crate) async fn outbox(&self) -> Vec<(String, Value)> {
        tessera_profile::db::outbox_rows(&self.state.pool)
            .await
            .expect("outbox")
            .into_iter()
            .map(|(subject, event)| (subject, serde_json::from_str(&event).expect("event json")))
            .collect()
    }
}

/// A valid profile body.
pub(crate) fn ada() -> Value {
    json!({
        "email": "Ada@Example.com",
        "display_name": "Ada Lovelace",
        "locale": "en-gb",
        "phone": "+44 20 7946 0958",
    })
}
