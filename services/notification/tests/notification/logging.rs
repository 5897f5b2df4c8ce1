//! Log shipping from notification into the real logging service: with `--log-endpoint` and a
//! client-credentials token from the real identity (`--token-url`, `--client-id`,
//! `--client-secret`), a request's log records arrive with its request id, and the
//! shipper's counters are in notification's metrics.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Parser;
use serde_json::{Value, json};
use service_kit::{CancellationToken, Listeners, SystemClock};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::support::{ISSUER, nats_url};

const PEPPER: [u8; 32] = [5; 32];
const SECRET: &str = "tsc_the-notification-secret-used-by-this-test-only";

/// Identity (with notification registered as a `service` client) and logging (trusting
/// identity's keys), on a thread and runtime of their own: the shipping layer under test
/// is installed for the test's thread only, so their logs are not shipped as notification's.
struct Platform {
    identity: String,
    logging: String,
    /// A token with the `admin` role, to read logs.
    reader: String,
    shutdown: CancellationToken,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Platform {
    async fn start() -> Self {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let (started, received) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let dir = tempfile::tempdir().expect("tempdir");
                let (identity, reader) = start_identity(dir.path(), &stop).await;
                let logging = start_logging(dir.path(), &identity, &stop).await;
                let _ = started.send((identity, logging, reader));
                stop.cancelled().await;
            });
        });
        let (identity, logging, reader) = received.await.expect("identity and logging started");
        Self {
            identity,
            logging,
            reader,
            shutdown,
        }
    }
}

async fn start_identity(dir: &std::path::Path, stop: &CancellationToken) -> (String, String) {
    let hash = tessera_identity::secrets::SecretHasher::new(&PEPPER).hash(SECRET);
    let registry = json!({ "clients": [{
        "client_id": "notification",
        "secret_hash": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash),
        "roles": ["service"],
    }] });
    let registry_file = dir.join("clients.json");
    std::fs::write(&registry_file, registry.to_string()).expect("write registry");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let config = tessera_identity::config::Cli::try_parse_from([
        "tessera-identity",
        "--issuer",
        ISSUER,
        "--database-url",
        &format!("sqlite:{}", dir.join("identity.db").display()),
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
    let listeners = Listeners::loopback().await.expect("bind");
    let base = format!("http://{}", listeners.public_addr().expect("addr"));
    let admin = format!("http://{}", listeners.admin_addr().expect("addr"));
    let state = identity.state.clone();
    tokio::spawn(identity.service.serve(listeners, stop.clone()));
    testkit::wait_until_ready(&admin, Duration::from_secs(15)).await;
    let reader = state
        .tokens
        .issue("log-reader", &["admin".to_owned()], None)
        .expect("a signing key is loaded")
        .access_token;
    (base, reader)
}

async fn start_logging(dir: &std::path::Path, identity: &str, stop: &CancellationToken) -> String {
    let config = tessera_logging::config::Config::try_parse_from([
        "tessera-logging",
        "--database-url",
        &format!("sqlite:{}", dir.join("logging.db").display()),
        "--jwks-url",
        &format!("{identity}/.well-known/jwks.json"),
        "--issuer",
        ISSUER,
    ])
    .expect("valid logging config");
    let runtime = tessera_logging::Runtime {
        clock: Arc::new(SystemClock),
        bus: None,
    };
    let logging = tessera_logging::build(&config, runtime, stop).expect("logging builds");
    let listeners = Listeners::loopback().await.expect("bind");
    let base = format!("http://{}", listeners.public_addr().expect("addr"));
    let admin = format!("http://{}", listeners.admin_addr().expect("addr"));
    tokio::spawn(logging.service.serve(listeners, stop.clone()));
    testkit::wait_until_ready(&admin, Duration::from_secs(15)).await;
    base
}

/// Notification's settings, shipping to `platform`'s logging with its service token.
fn shipping_config(
    platform: &Platform,
    dir: &std::path::Path,
) -> tessera_notification::config::Config {
    tessera_notification::config::Config::try_parse_from([
        "tessera-notification".to_owned(),
        "--database-url".into(),
        format!("sqlite:{}", dir.join("notification.db").display()),
        "--jwks-url".into(),
        format!("{}/.well-known/jwks.json", platform.identity),
        "--issuer".into(),
        ISSUER.into(),
        "--nats-url".into(),
        nats_url(),
        // Never called here: no event arrives.
        "--profile-url".into(),
        "http://127.0.0.1:1".into(),
        "--email-transport".into(),
        "file".into(),
        "--email-dir".into(),
        dir.join("mail").display().to_string(),
        "--sms-dir".into(),
        dir.join("sms").display().to_string(),
        "--push-dir".into(),
        dir.join("push").display().to_string(),
        "--log-endpoint".into(),
        format!("{}/v1/logs", platform.logging),
        "--token-url".into(),
        format!("{}/oauth2/token", platform.identity),
        "--client-secret".into(),
        SECRET.into(),
    ])
    .expect("valid notification config")
}

#[tokio::test]
async fn with_a_log_endpoint_a_request_s_log_records_arrive_in_logging_with_its_request_id() {
    testkit::init_logs();
    let platform = Platform::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let config = shipping_config(&platform, dir.path());
    // What `init_with_shipping_token` installs globally, installed for this thread (the
    // test binary's global subscriber is taken).
    let token = tessera_notification::log_token_source(&config)
        .expect("--log-endpoint gives a client-credentials source");
    let (layer, shipper) =
        service_kit::telemetry::shipping_layer(&config.log_shipping, "notification", Some(token))
            .expect("--log-endpoint starts shipping");
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(layer.with_filter(LevelFilter::INFO)),
    );
    let listeners = Listeners::loopback().await.expect("bind");
    let base = format!("http://{}", listeners.public_addr().expect("addr"));
    let admin = format!("http://{}", listeners.admin_addr().expect("addr"));
    tokio::spawn(tessera_notification::run_shipping_logs(
        config,
        listeners,
        shutdown.clone(),
        Some(shipper.clone()),
    ));
    testkit::wait_until_ready(&admin, Duration::from_secs(15)).await;

    let http = reqwest::Client::new();
    let request_id = format!("nt-{}", uuid::Uuid::new_v4().simple());
    let response = http
        .get(format!(
            "{base}/v1/notifications/01a21497-0000-7000-8000-000000000000"
        ))
        .header("x-request-id", &request_id)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);

    let query = format!(
        "{}/v1/records?service=notification&request_id={request_id}",
        platform.logging
    );
    let records = testkit::eventually(Duration::from_secs(20), "the request's records", || {
        let (http, query, reader) = (&http, &query, &platform.reader);
        async move {
            let page: Value = http
                .get(query)
                .bearer_auth(reader)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let records = page["records"].as_array().cloned().unwrap_or_default();
            (!records.is_empty()).then_some(records)
        }
    })
    .await;
    let finished = records
        .iter()
        .find(|r| r["body"] == "request finished")
        .unwrap_or_else(|| panic!("the access log line was shipped: {records:?}"));
    assert_eq!(finished["request_id"], request_id.as_str());
    assert_eq!(finished["service"], "notification");
    assert_eq!(finished["attributes"]["status"], 401);
    assert!(shipper.shipped() > 0);

    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("tessera_log_shipping_shipped_total"),
        "{metrics}"
    );
    shutdown.cancel();
}
