//! A gateway under test with real collaborators on loopback: a JWKS server holding a
//! freshly generated signing key, an echo upstream that reports what it received, and a
//! routes file in a temp dir.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::Request;
use axum::response::IntoResponse;
use clap::Parser;
use http::StatusCode;
use serde_json::{Value, json};
use service_kit::{CancellationToken, SystemClock};
use tessera_auth::{AccessClaims, Audience};
use tessera_keys::{Algorithm, KeyState, Keyset, SigningKey, generate};

pub(crate) const ISSUER: &str = "http://issuer.test";

/// Serves `router` on a loopback port until the test ends.
pub(crate) async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    addr
}

/// A routes file of one public route: `/pub/...` to the upstream as `/...`.
pub(crate) const PUBLIC_ROUTES: &str = r"
version: 1
routes:
  - name: public
    match: { prefix: /pub/ }
    rewrite_prefix: /
    upstreams: [http://{upstream}]
    auth: public
";

/// An upstream answering every request with what it saw: method, path, query, headers.
pub(crate) async fn echo_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().fallback(move |request: Request| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let headers: serde_json::Map<String, Value> = request
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value::String(v.to_str().unwrap_or("?").to_owned()),
                    )
                })
                .collect();
            Json(json!({
                "method": request.method().as_str(),
                "path": request.uri().path(),
                "query": request.uri().query(),
                "headers": headers,
            }))
        }
    });
    (serve(router).await, hits)
}

/// A signing key and a JWKS server publishing it; the server answers 503 until
/// `publishing` is set.
pub(crate) struct Issuer {
    pub(crate) key: SigningKey,
    pub(crate) jwks_url: String,
    pub(crate) publishing: Arc<AtomicBool>,
}

impl Issuer {
    pub(crate) async fn start(publishing_now: bool) -> Self {
        let key = generate(Algorithm::EdDSA)
            .expect("key")
            .into_key(KeyState::Active, time::OffsetDateTime::now_utc());
        let keyset = Keyset {
            version: 1,
            keys: vec![key.clone()],
        };
        let jwks = serde_json::to_value(keyset.jwks()).expect("jwks");
        let publishing = Arc::new(AtomicBool::new(publishing_now));
        let flag = publishing.clone();
        let router = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (flag, jwks) = (flag.clone(), jwks.clone());
                async move {
                    if flag.load(Ordering::SeqCst) {
                        Json(jwks).into_response()
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE.into_response()
                    }
                }
            }),
        );
        let addr = serve(router).await;
        Self {
            key: SigningKey::from_key(&key).expect("signing key"),
            jwks_url: format!("http://{addr}/.well-known/jwks.json"),
            publishing,
        }
    }

    /// A valid access token for `subject` with `roles`.
    pub(crate) fn token(&self, subject: &str, roles: &[&str]) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            iss: ISSUER.to_owned(),
            sub: subject.to_owned(),
            aud: Audience(vec!["tessera".to_owned()]),
            exp: now + 300,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            client_id: None,
        };
        self.key.sign(&claims).expect("sign")
    }
}

/// A running gateway.
pub(crate) struct TestGateway {
    pub(crate) base: String,
    pub(crate) admin: String,
    pub(crate) routes_file: std::path::PathBuf,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
    stopped: Arc<tokio::sync::Notify>,
    _dir: tempfile::TempDir,
}

/// Worker threads of every test gateway.
pub(crate) const WORKERS: usize = 2;

/// How a test gateway is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serving {
    /// As the gateway binary serves it: thread-per-core, [`WORKERS`] workers sharing the
    /// public port.
    PerCore,
    /// As the all-in-one `tessera dev` serves it: the built service's axum router behind
    /// the service kit's layers (`edge::handle`), on the test's runtime.
    AsDev,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestGateway {
    /// Starts a gateway with `routes` (YAML; `{upstream}` is replaced by the echo
    /// upstream's address) and extra flags, served as the binary serves it.
    pub(crate) async fn start(
        issuer: &Issuer,
        routes: &str,
        upstream: SocketAddr,
        args: &[&str],
    ) -> Self {
        Self::start_serving(Serving::PerCore, issuer, routes, upstream, args).await
    }

    /// [`TestGateway::start`], served as `serving` says.
    pub(crate) async fn start_serving(
        serving: Serving,
        issuer: &Issuer,
        routes: &str,
        upstream: SocketAddr,
        args: &[&str],
    ) -> Self {
        testkit::init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let routes_file = dir.path().join("routes.yaml");
        std::fs::write(
            &routes_file,
            routes.replace("{upstream}", &upstream.to_string()),
        )
        .expect("write routes");
        let routes_arg = routes_file.display().to_string();
        let mut args_for_gateway = vec![
            "tessera-gateway",
            "--routes-file",
            &routes_arg,
            "--jwks-url",
            &issuer.jwks_url,
            "--issuer",
            ISSUER,
        ];
        args_for_gateway.extend_from_slice(args);
        let config =
            tessera_gateway::config::Config::try_parse_from(args_for_gateway).expect("config");
        let shutdown = CancellationToken::new();
        let built = tessera_gateway::build(&config, Arc::new(SystemClock), &shutdown)
            .await
            .expect("gateway builds");
        let stopped = Arc::new(tokio::sync::Notify::new());
        let (base, admin) = match serving {
            Serving::PerCore => {
                // Thread-per-core, here two workers sharing the public port, so every
                // test also crosses the workers' shared state.
                let public = tessera_gateway::serve::bind_public(
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                    WORKERS,
                )
                .expect("bind public");
                let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind admin");
                let urls = (
                    format!("http://{}", public[0].local_addr().expect("addr")),
                    format!("http://{}", admin.local_addr().expect("addr")),
                );
                let (shutdown, stopped) = (shutdown.clone(), stopped.clone());
                tokio::spawn(async move {
                    tessera_gateway::serve::serve_per_core(built, public, admin, shutdown)
                        .await
                        .expect("workers start");
                    stopped.notify_one();
                });
                urls
            }
            Serving::AsDev => {
                let listeners = service_kit::Listeners::bind_addrs(
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                )
                .await
                .expect("bind");
                let urls = (
                    format!("http://{}", listeners.public_addr().expect("addr")),
                    format!("http://{}", listeners.admin_addr().expect("addr")),
                );
                let (shutdown, stopped) = (shutdown.clone(), stopped.clone());
                tokio::spawn(async move {
                    built.service.serve(listeners, shutdown).await;
                    stopped.notify_one();
                });
                urls
            }
        };
        Self {
            base,
            admin,
            routes_file,
            http: reqwest::Client::new(),
            shutdown,
            stopped,
            _dir: dir,
        }
    }

    /// Starts the shutdown (drain) without waiting.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every worker has drained and stopped.
    pub(crate) async fn stopped(&self) {
        self.stopped.notified().await;
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until the JWKS is loaded (readiness).
    pub(crate) async fn ready(&self) {
        testkit::wait_until_ready(&self.admin, Duration::from_secs(10)).await;
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("send")
    }
}

/// The problem `code` of a response.
pub(crate) async fn code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}
