//! Log shipping from notification into the real logging service: with `--log-endpoint` and a
//! client-credentials token from the real identity (`--token-url`, `--client-id`,
//! `--client-secret`), a request's log records arrive with its request id, and the
//! shipper's counters are in notification's metrics.

use clap::Parser;
use platform_testkit::{Platform, access_log, assert_shipping_metrics, serve_shipping_logs};
use service_kit::CancellationToken;

use crate::support::{ISSUER, nats_url};

const SECRET: &str = "tsc_the-notification-secret-used-by-this-test-only";

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
        format!("{}/v1/logs", platform.logging.base),
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
    let platform = Platform::start(ISSUER, "notification", SECRET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let config = shipping_config(&platform, dir.path());
    let token = tessera_notification::log_token_source(&config)
        .expect("--log-endpoint gives a client-credentials source");
    let (shipper, _guard) =
        platform_testkit::ship_logs_on_this_thread(&config.log_shipping, "notification", token);
    let endpoints = serve_shipping_logs(
        tessera_notification::run_shipping_logs,
        config,
        &shutdown,
        &shipper,
    )
    .await;

    let request_id = format!("nt-{}", uuid::Uuid::new_v4().simple());
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v1/notifications/01a21497-0000-7000-8000-000000000000",
            endpoints.base
        ))
        .header("x-request-id", &request_id)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);

    let finished = access_log(
        &platform.logging,
        &platform.reader,
        "notification",
        &request_id,
    )
    .await;
    assert_eq!(finished["request_id"], request_id.as_str());
    assert_eq!(finished["service"], "notification");
    assert_eq!(finished["attributes"]["status"], 401);
    assert!(shipper.shipped() > 0);
    assert_shipping_metrics(&endpoints.admin).await;
    shutdown.cancel();
}
