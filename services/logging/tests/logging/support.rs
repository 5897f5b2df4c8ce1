//! Starting logging for a test: a JWKS server holding a fresh signing key (what identity
//! publishes), a fresh SQLite file or PostgreSQL database, loopback ports, and helpers
//! to build OTLP requests with the `opentelemetry-proto` messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use service_kit::{CancellationToken, Listeners, SystemClock};
use tessera_auth::{AccessClaims, Audience};
use tessera_events::Bus;
use tessera_keys::{Algorithm, KeyState, Keyset, SigningKey, generate};
use tessera_logging::Runtime;
use tessera_logging::config::Config;
use tessera_logging::state::AppState;

pub(crate) const ISSUER: &str = "http://issuer.test";

#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend, as `<name>::sqlite` and `<name>::postgres`.
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($backend:ident: Backend) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$meta])*
            async fn run($backend: $crate::support::Backend) $body
            #[tokio::test]
            async fn sqlite() { run($crate::support::Backend::Sqlite).await }
            #[tokio::test]
            async fn postgres() { run($crate::support::Backend::Postgres).await }
        }
    };
}
pub(crate) use on_both_backends;

/// Serves `router` on a loopback port until the test ends.
pub(crate) async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    addr
}

/// A signing key and a JWKS server publishing it.
pub(crate) struct Issuer {
    key: SigningKey,
    pub(crate) jwks_url: String,
}

impl Issuer {
    pub(crate) async fn start() -> Self {
        let key = generate(Algorithm::EdDSA)
            .expect("key")
            .into_key(KeyState::Active, time::OffsetDateTime::now_utc());
        let keyset = Keyset {
            version: 1,
            keys: vec![key.clone()],
        };
        let jwks = serde_json::to_value(keyset.jwks()).expect("jwks");
        let router = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let addr = serve(router).await;
        Self {
            key: SigningKey::from_key(&key).expect("signing key"),
            jwks_url: format!("http://{addr}/.well-known/jwks.json"),
        }
    }

    /// A valid access token with `roles`.
    pub(crate) fn token(&self, roles: &[&str]) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            iss: ISSUER.to_owned(),
            sub: "caller".to_owned(),
            aud: Audience(vec!["tessera".to_owned()]),
            exp: now + 300,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            client_id: roles.contains(&"service").then(|| "svc".to_owned()),
        };
        self.key.sign(&claims).expect("sign")
    }
}

/// A running logging service.
pub(crate) struct TestLogging {
    pub(crate) base: String,
    pub(crate) admin: String,
    pub(crate) http: reqwest::Client,
    pub(crate) state: AppState,
    pub(crate) service_token: String,
    pub(crate) admin_token: String,
    pub(crate) issuer: Arc<Issuer>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestLogging {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestLogging {
    pub(crate) async fn on(backend: Backend) -> Self {
        Self::start(backend, &[]).await
    }

    /// Starts logging on `backend` with extra flags.
    pub(crate) async fn start(backend: Backend, extra: &[&str]) -> Self {
        Self::start_with_bus(backend, extra, None).await
    }

    /// Starts logging consuming audit events from `bus`.
    pub(crate) async fn start_with_bus(backend: Backend, extra: &[&str], bus: Option<Bus>) -> Self {
        Self::start_on(backend, extra, bus, None).await
    }

    /// Starts logging with its public listener on `public` (a free loopback port when
    /// `None`).
    pub(crate) async fn start_on(
        backend: Backend,
        extra: &[&str],
        bus: Option<Bus>,
        public: Option<SocketAddr>,
    ) -> Self {
        testkit::init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite:{}", dir.path().join("logging.db").display()),
            Backend::Postgres => testkit::fresh_postgres_database().await,
        };
        let issuer = Arc::new(Issuer::start().await);
        let mut args: Vec<String> = [
            "tessera-logging",
            "--database-url",
            &database_url,
            "--jwks-url",
            &issuer.jwks_url,
            "--issuer",
            ISSUER,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let config = Config::try_parse_from(args).expect("valid test config");
        let shutdown = CancellationToken::new();
        let runtime = Runtime {
            clock: Arc::new(SystemClock),
            bus,
        };
        let logging = tessera_logging::build(&config, runtime, &shutdown).expect("logging builds");
        let listeners = match public {
            Some(addr) => Listeners::bind_addrs(addr, SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .expect("bind"),
            None => Listeners::loopback().await.expect("bind"),
        };
        let base = format!("http://{}", listeners.public_addr().expect("addr"));
        let admin = format!("http://{}", listeners.admin_addr().expect("addr"));
        let state = logging.state.clone();
        tokio::spawn(logging.service.serve(listeners, shutdown.clone()));
        testkit::wait_until_ready(&admin, Duration::from_secs(20)).await;
        Self {
            base,
            admin,
            http: reqwest::Client::new(),
            state,
            service_token: issuer.token(&["service"]),
            admin_token: issuer.token(&["admin"]),
            issuer,
            shutdown,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a protobuf export request with the service token.
    pub(crate) async fn export(&self, request: &ExportLogsServiceRequest) -> reqwest::Response {
        self.http
            .post(self.url("/v1/logs"))
            .bearer_auth(&self.service_token)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .expect("send")
    }

    /// GETs `/v1/records?query` as admin and returns the JSON body (asserting 200).
    pub(crate) async fn records(&self, query: &str) -> Value {
        let response = self
            .http
            .get(self.url(&format!("/v1/records?{query}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "GET /v1/records?{query}");
        response.json().await.expect("json")
    }

    /// The bodies of the records matching `query`, newest first.
    pub(crate) async fn bodies(&self, query: &str) -> Vec<String> {
        self.records(query).await["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Nanoseconds since the epoch, now.
pub(crate) fn now_nanos() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).expect("after 1970")
}

pub(crate) fn string_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

pub(crate) fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(string_value(value)),
        ..KeyValue::default()
    }
}

/// A record with `body` at `severity` (OTLP number) and `attrs`, stamped now.
pub(crate) fn record(body: &str, severity: i32, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: now_nanos(),
        observed_time_unix_nano: now_nanos(),
        severity_number: severity,
        severity_text: String::new(),
        body: Some(string_value(body)),
        attributes: attrs,
        ..LogRecord::default()
    }
}

/// An export request of `records` from `service`.
pub(crate) fn export_request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", service)],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..ScopeLogs::default()
            }],
            schema_url: String::new(),
        }],
    }
}
