//! Log shipping from profile into the real logging service: with `--log-endpoint` and a
//! client-credentials token from the real identity (`--token-url`, `--client-id`,
//! `--client-secret`), a request's log records arrive with its request id, and the
//! shipper's counters are in profile's metrics.

use clap::Parser;
use platform_testkit::{Platform, access_log, assert_shipping_metrics, serve_shipping_logs};
use service_kit::CancellationToken;

use crate::support::ISSUER;

const SECRET: &str = "tsc_the-profile-secret-used-by-this-test-only";

fn nats_url() -> String {
    std::env::var("TESSERA_TEST_NATS_URL")
        .expect("TESSERA_TEST_NATS_URL: a NATS server with JetStream (tools/services up)")
}

#[tokio::test]
async fn with_a_log_endpoint_a_request_s_log_records_arrive_in_logging_with_its_request_id() {
    testkit::init_logs();
    let platform = Platform::start(ISSUER, "profile", SECRET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let config = tessera_profile::config::Config::try_parse_from([
        "tessera-profile",
        "--database-url",
        &format!("sqlite:{}", dir.path().join("profile.db").display()),
        "--jwks-url",
        &format!("{}/.well-known/jwks.json", platform.identity),
        "--issuer",
        ISSUER,
        "--nats-url",
        &nats_url(),
        "--log-endpoint",
        &format!("{}/v1/logs", platform.logging.base),
        "--token-url",
        &format!("{}/oauth2/token", platform.identity),
        "--client-secret",
        SECRET,
    ])
    .expect("valid profile config");
    let token = tessera_profile::log_token_source(&config)
        .expect("valid token settings")
        .expect("a client-credentials source");
    let (shipper, _guard) =
        platform_testkit::ship_logs_on_this_thread(&config.log_shipping, "profile", token);
    let endpoints = serve_shipping_logs(
        tessera_profile::run_shipping_logs,
        config,
        &shutdown,
        &shipper,
    )
    .await;

    let request_id = format!("pr-{}", uuid::Uuid::new_v4().simple());
    let response = reqwest::Client::new()
        .get(format!("{}/v1/profiles/me", endpoints.base))
        .header("x-request-id", &request_id)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);

    let finished = access_log(&platform.logging, &platform.reader, "profile", &request_id).await;
    assert_eq!(finished["request_id"], request_id.as_str());
    assert_eq!(finished["service"], "profile");
    assert_eq!(finished["attributes"]["status"], 401);
    assert!(shipper.shipped() > 0);
    assert_shipping_metrics(&endpoints.admin).await;
    shutdown.cancel();
}

#[test]
fn a_token_url_without_a_client_secret_is_a_configuration_error() {
    let config = tessera_profile::config::Config::try_parse_from([
        "tessera-profile",
        "--database-url",
        "sqlite::memory:",
        "--jwks-url",
        "http://identity/.well-known/jwks.json",
        "--issuer",
        ISSUER,
        "--nats-url",
        "nats://127.0.0.1:1",
        "--log-endpoint",
        "http://logging/v1/logs",
        "--token-url",
        "http://identity/oauth2/token",
    ])
    .expect("parses");
    let error = tessera_profile::log_token_source(&config).expect_err("refused");
    assert_eq!(
        error.to_string(),
        "configuration error: --token-url needs --client-secret / TESSERA_CLIENT_SECRET"
    );
}
