//! Starting identity for a test: on a fresh SQLite file or PostgreSQL database, with the
//! flags the operator would pass, on loopback ports.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Parser;
use http::StatusCode;
use serde_json::{Value, json};
use service_kit::{CancellationToken, Clock, Listeners, ManualClock, SystemClock};
use tessera_identity::config::Cli;
use tessera_identity::state::AppState;
use tessera_identity::{Runtime, build};

pub(crate) use testkit::{Backend, on_both_backends};

/// A fixed test key for sealing the standalone keyset.
pub(crate) const SEAL_KEY: [u8; 32] = [42; 32];
pub(crate) const ISSUER: &str = "http://issuer.test";
pub(crate) const PASSWORD: &str = "a perfectly fine passphrase";
/// The pepper [`TestIdentity::with_billing_client`] hashes client secrets with.
pub(crate) const PEPPER: [u8; 32] = [7; 32];

pub(crate) struct TestIdentity {
    pub(crate) base: String,
    pub(crate) admin: String,
    pub(crate) http: reqwest::Client,
    pub(crate) state: AppState,
    pub(crate) shutdown: CancellationToken,
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for TestIdentity {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) struct Options<'a> {
    pub(crate) backend: Backend,
    pub(crate) args: &'a [&'a str],
    pub(crate) clock: Option<ManualClock>,
    /// Files to write into the temp dir before start: (name, content).
    pub(crate) files: Vec<(&'a str, String)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            args: &[],
            clock: None,
            files: Vec::new(),
        }
    }
}

impl TestIdentity {
    pub(crate) async fn start(options: Options<'_>) -> Self {
        testkit::init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in &options.files {
            std::fs::write(dir.path().join(name), content).expect("write file");
        }
        let database_url = options.backend.database_url(dir.path(), "identity").await;
        let seal = base64::engine::general_purpose::STANDARD.encode(SEAL_KEY);
        let dir_path = dir.path().display().to_string();
        let mut args: Vec<String> = [
            "tessera-identity",
            "--issuer",
            ISSUER,
            "--database-url",
            &database_url,
            "--argon2-memory-kib",
            "256",
            "--argon2-iterations",
            "1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if !options.args.contains(&"--keyset-dir") {
            args.extend(["--keyset-encryption-key".to_owned(), seal]);
        }
        args.extend(options.args.iter().map(|a| a.replace("{dir}", &dir_path)));
        let config = Cli::try_parse_from(args).expect("valid test config").config;
        let clock: Arc<dyn Clock> = match &options.clock {
            Some(clock) => Arc::new(clock.clone()),
            None => Arc::new(SystemClock),
        };
        let runtime = Runtime {
            clock,
            key_check_interval: Duration::from_millis(50),
        };
        let shutdown = CancellationToken::new();
        let identity = build(&config, runtime, &shutdown).expect("identity builds");
        let listeners = Listeners::loopback().await.expect("bind");
        let base = format!("http://{}", listeners.public_addr().expect("addr"));
        let admin = format!("http://{}", listeners.admin_addr().expect("addr"));
        let state = identity.state.clone();
        tokio::spawn(identity.service.serve(listeners, shutdown.clone()));
        let app = Self {
            base,
            admin,
            http: reqwest::Client::new(),
            state,
            shutdown,
            dir,
        };
        app.wait_ready().await;
        app
    }

    /// Starts identity on `backend` with `args`, and a client registry holding `billing`
    /// (role `service`) with `secret`: the service client of the OAuth, JOSE and audit
    /// tests.
    pub(crate) async fn with_billing_client(backend: Backend, args: &[&str], secret: &str) -> Self {
        let pepper = base64::engine::general_purpose::STANDARD.encode(PEPPER);
        let mut args = args.to_vec();
        args.extend([
            "--client-registry",
            "{dir}/clients.json",
            "--client-secret-pepper",
            &pepper,
        ]);
        Self::start(Options {
            backend,
            args: &args,
            files: vec![(
                "clients.json",
                registry(&PEPPER, "billing", secret, &["service"]),
            )],
            ..Options::default()
        })
        .await
    }

    pub(crate) async fn on(backend: Backend) -> Self {
        Self::start(Options {
            backend,
            ..Options::default()
        })
        .await
    }

    pub(crate) async fn wait_ready(&self) {
        testkit::wait_until_ready(&self.admin, Duration::from_secs(15)).await;
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, with `token` as bearer when given, asserting 200; the body as JSON.
    pub(crate) async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("send");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("send")
    }

    pub(crate) async fn signup(&self, email: &str) -> reqwest::Response {
        self.post_json(
            "/v1/signup",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await
    }

    /// Signs up and logs in; returns the token response.
    pub(crate) async fn user_tokens(&self, email: &str) -> Value {
        assert_eq!(self.signup(email).await.status(), StatusCode::CREATED);
        self.login(email, PASSWORD).await
    }

    pub(crate) async fn login(&self, email: &str, password: &str) -> Value {
        let response = self
            .post_json(
                "/v1/login",
                &json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "login of {email}");
        response.json().await.expect("json")
    }

    pub(crate) async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.http
            .post(self.url("/oauth2/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .expect("send")
    }

    pub(crate) async fn client_token(&self, id: &str, secret: &str) -> reqwest::Response {
        self.http
            .post(self.url("/oauth2/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("send")
    }

    pub(crate) async fn me(&self, access_token: &str) -> reqwest::Response {
        self.http
            .get(self.url("/v1/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("send")
    }

    /// Outbox rows not yet relayed: (subject, event JSON).
    pub(crate) async fn outbox(&self) -> Vec<(String, Value)> {
        tessera_identity::db::outbox::unsent(&self.state.pool, 10_000)
            .await
            .expect("outbox")
            .into_iter()
            .map(|(subject, event)| (subject, serde_json::from_str(&event).expect("event json")))
            .collect()
    }
}

/// The claims of a JWT, decoded without verification (tests inspect what was issued).
pub(crate) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims json")
}

/// The header of a JWT.
pub(crate) fn header(token: &str) -> Value {
    let part = token.split('.').next().expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("header json")
}

/// A client registry file with one client, hashed with `pepper`.
pub(crate) fn registry(pepper: &[u8; 32], client_id: &str, secret: &str, roles: &[&str]) -> String {
    let client = platform_testkit::ServiceClient {
        id: client_id,
        secret,
        roles,
    };
    platform_testkit::client_registry(pepper, &[client])
}
