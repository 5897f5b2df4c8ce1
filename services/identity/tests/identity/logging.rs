//! Identity with the real logging service: its request logs shipped with `--log-endpoint`
//! (authenticated by the service token identity signs for itself) arrive with their
//! request id, and its audit outbox relayed over NATS with `--nats-url` is chained by
//! logging's audit consumer and verifies.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Parser;
use platform_testkit::{Logging, access_log, admin_token, assert_shipping_metrics, loopback};
use serde_json::Value;
use service_kit::CancellationToken;
use tessera_identity::config::Cli;
use tessera_identity::{Runtime, SelfIssuedToken, build};

use crate::support::{Backend, ISSUER, PASSWORD, SEAL_KEY, TestIdentity};

fn nats_url() -> String {
    std::env::var("TESSERA_TEST_NATS_URL")
        .expect("TESSERA_TEST_NATS_URL: a NATS server with JetStream (tools/services up)")
}

fn nats_config(service: &str, stream: String, root: String) -> tessera_events::NatsConfig {
    let mut config = tessera_events::NatsConfig::new(nats_url(), service);
    config.stream = stream;
    config.subject_root = root;
    config
}

#[tokio::test]
async fn with_a_log_endpoint_a_request_s_log_records_arrive_in_logging_with_its_request_id() {
    testkit::init_logs();
    // Identity's address first: logging trusts its JWKS, identity ships to logging.
    let (listeners, endpoints) = loopback().await;
    let logging = Logging::start(&endpoints.base, ISSUER, None).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let seal = base64::engine::general_purpose::STANDARD.encode(SEAL_KEY);
    let endpoint = format!("{}/v1/logs", logging.base);
    let config = Cli::try_parse_from([
        "tessera-identity",
        "--issuer",
        ISSUER,
        "--database-url",
        &format!("sqlite:{}", dir.path().join("identity.db").display()),
        "--keyset-encryption-key",
        &seal,
        "--argon2-memory-kib",
        "256",
        "--argon2-iterations",
        "1",
        "--log-endpoint",
        &endpoint,
    ])
    .expect("valid identity config")
    .config;

    let token = Arc::new(SelfIssuedToken::default());
    let (shipper, _guard) =
        platform_testkit::ship_logs_on_this_thread(&config.log_shipping, "identity", token.clone());
    let shutdown = CancellationToken::new();
    let runtime = Runtime {
        key_check_interval: Duration::from_millis(50),
        ..Runtime::default()
    };
    let identity = build(&config, runtime, &shutdown).expect("identity builds");
    identity.attach_log_shipping(&shipper, &token);
    let state = identity.state.clone();
    tokio::spawn(identity.service.serve(listeners, shutdown.clone()));
    testkit::wait_until_ready(&endpoints.admin, Duration::from_secs(15)).await;
    testkit::wait_until_ready(&logging.admin, Duration::from_secs(15)).await;

    let request_id = format!("signup-{}", uuid::Uuid::new_v4().simple());
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let response = reqwest::Client::new()
        .post(format!("{}/v1/signup", endpoints.base))
        .header("x-request-id", &request_id)
        .json(&serde_json::json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);

    let reader = admin_token(&state);
    let finished = access_log(&logging, &reader, "identity", &request_id).await;
    assert_eq!(finished["request_id"], request_id.as_str());
    assert_eq!(finished["service"], "identity");
    assert_eq!(finished["attributes"]["status"], 201);
    assert!(shipper.shipped() > 0);
    // The shipper's counters are in identity's metrics.
    assert_shipping_metrics(&endpoints.admin).await;
    shutdown.cancel();
}

const SECRET: &str = "tsc_the-billing-service-secret-for-this-test";

#[tokio::test]
async fn audit_records_relayed_over_nats_are_chained_by_logging_and_verify() {
    // A private stream and subject root on the shared NATS server, so runs do not meet.
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (stream, root) = (format!("IDLOG_{suffix}"), format!("t{suffix}"));
    let url = nats_url();
    let args = [
        "--nats-url",
        &url,
        "--nats-stream",
        &stream,
        "--nats-subject-root",
        &root,
    ];
    let identity = TestIdentity::with_billing_client(Backend::Sqlite, &args, SECRET).await;
    let bus = nats_config("logging", stream, root);
    let logging = Logging::start(&identity.base, ISSUER, Some(bus)).await;
    testkit::wait_until_ready(&logging.admin, Duration::from_secs(15)).await;

    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let user: Value = identity.user_tokens(&email).await;
    assert!(user["access_token"].is_string());
    let issued = identity.client_token("billing", SECRET).await;
    assert_eq!(issued.status(), 200);

    let reader = admin_token(&identity.state);
    let records = testkit::eventually(Duration::from_secs(30), "four chained records", || {
        let (logging, reader) = (&logging, &reader);
        async move {
            let page = logging.get("/v1/audit/records", reader).await;
            let records = page["records"].as_array().cloned().unwrap_or_default();
            (records.len() >= 4).then_some(records)
        }
    })
    .await;
    let mut types: Vec<&str> = records
        .iter()
        .map(|r| r["type"].as_str().unwrap_or_default())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            // Standalone identity activating its first signing key.
            "dev.tessera.identity.audit.key_state_changed.v1",
            "dev.tessera.identity.audit.login_succeeded.v1",
            "dev.tessera.identity.audit.signup.v1",
            "dev.tessera.identity.audit.token_issued.v1",
        ],
        "{records:?}"
    );
    let issued = records
        .iter()
        .find(|r| r["type"] == "dev.tessera.identity.audit.token_issued.v1")
        .expect("token_issued");
    assert_eq!(issued["subject"], "billing");

    let verdict = logging.get("/v1/audit/verify", &reader).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["records"], 4, "{verdict}");
    // Relayed: nothing waits in identity's outbox.
    testkit::eventually(Duration::from_secs(10), "the outbox drained", || {
        let identity = &identity;
        async move { identity.outbox().await.is_empty().then_some(()) }
    })
    .await;
}
