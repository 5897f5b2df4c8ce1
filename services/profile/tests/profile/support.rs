//! Starting identity and profile for a test: identity on a SQLite file with one service
//! client, profile on a fresh SQLite file or PostgreSQL database with the flags the
//! operator would pass, both on loopback ports.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Parser;
use http::StatusCode;
use serde_json::{Value, json};
use service_kit::{CancellationToken, Listeners, SystemClock};
use tessera_profile::state::AppState;

pub(crate) const ISSUER: &str = "http://issuer.test";
const PASSWORD: &str = "a perfectly fine passphrase";
const PEPPER: [u8; 32] = [7; 32];
pub(crate) const SERVICE_CLIENT: &str = "svc-notification";
pub(crate) const SERVICE_SECRET: &str = "a-service-secret-of-sufficient-length";
pub(crate) const PLAIN_CLIENT: &str = "svc-other";

#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

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

/// Starts identity on a SQLite file in `dir` with two service clients (one with the
/// `service` role, one without); returns its base URL.
pub(crate) async fn start_identity(dir: &std::path::Path, shutdown: &CancellationToken) -> String {
    let hasher = tessera_identity::secrets::SecretHasher::new(&PEPPER);
    let hash =
        |secret: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.hash(secret));
    let registry = json!({ "clients": [
        { "client_id": SERVICE_CLIENT, "secret_hash": hash(SERVICE_SECRET), "roles": ["service"] },
        { "client_id": PLAIN_CLIENT, "secret_hash": hash(SERVICE_SECRET), "roles": [] },
    ]});
    let registry_path = dir.join("clients.json");
    std::fs::write(&registry_path, registry.to_string()).expect("write registry");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let args = [
        "tessera-identity".to_owned(),
        "--issuer".into(),
        ISSUER.into(),
        "--database-url".into(),
        format!("sqlite:{}", dir.join("identity.db").display()),
        "--argon2-memory-kib".into(),
        "256".into(),
        "--argon2-iterations".into(),
        "1".into(),
        "--keyset-encryption-key".into(),
        b64(&[42; 32]),
        "--client-registry".into(),
        registry_path.display().to_string(),
        "--client-secret-pepper".into(),
        b64(&PEPPER),
    ];
    let config = tessera_identity::config::Cli::try_parse_from(args)
        .expect("valid identity config")
        .config;
    let identity = tessera_identity::build(&config, tessera_identity::Runtime::default(), shutdown)
        .expect("identity builds");
    let listeners = Listeners::loopback().await.expect("bind");
    let base = format!("http://{}", listeners.public_addr().expect("addr"));
    let admin = format!("http://{}", listeners.admin_addr().expect("addr"));
    tokio::spawn(identity.service.serve(listeners, shutdown.clone()));
    testkit::wait_until_ready(&admin, Duration::from_secs(15)).await;
    base
}

impl TestStack {
    pub(crate) async fn on(backend: Backend) -> Self {
        testkit::init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let shutdown = CancellationToken::new();
        let identity = start_identity(dir.path(), &shutdown).await;
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite:{}", dir.path().join("profile.db").display()),
            Backend::Postgres => testkit::fresh_postgres_database().await,
        };
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
        let listeners = Listeners::loopback().await.expect("bind");
        let base = format!("http://{}", listeners.public_addr().expect("addr"));
        let admin = format!("http://{}", listeners.admin_addr().expect("addr"));
        let state = profile.state.clone();
        tokio::spawn(profile.service.serve(listeners, shutdown.clone()));
        testkit::wait_until_ready(&admin, Duration::from_secs(15)).await;
        Self {
            identity,
            base,
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
        let credentials = json!({ "email": email, "password": PASSWORD });
        let signup = self
            .http
            .post(format!("{}/v1/signup", self.identity))
            .json(&credentials)
            .send()
            .await
            .expect("signup");
        assert_eq!(signup.status(), StatusCode::CREATED, "signup of {email}");
        let user: Value = signup.json().await.expect("json");
        let login: Value = self
            .http
            .post(format!("{}/v1/login", self.identity))
            .json(&credentials)
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        (
            user["id"].as_str().expect("id").to_owned(),
            login["access_token"].as_str().expect("token").to_owned(),
        )
    }

    /// A client-credentials token of `client_id`.
    pub(crate) async fn service_token(&self, client_id: &str) -> String {
        let response: Value = self
            .http
            .post(format!("{}/oauth2/token", self.identity))
            .basic_auth(client_id, Some(SERVICE_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("json");
        response["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
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

/// Runs a test body against SQLite and against PostgreSQL: two tests per scenario.
macro_rules! on_both_backends {
    ($(async fn $name:ident($backend:ident: Backend) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test] async fn $name() { let $backend = crate::support::Backend::Sqlite; $body } )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test] async fn $name() { let $backend = crate::support::Backend::Postgres; $body } )*
        }
    };
}
pub(crate) use on_both_backends;
