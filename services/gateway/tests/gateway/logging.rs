//! Log shipping from the gateway into the real logging service: with `--log-endpoint` and
//! a client-credentials token from the real identity (`--token-url`, `--client-id`,
//! `--client-secret`), a proxied request's log records arrive with its request id, and
//! the shipper's counters are in the gateway's metrics.

use clap::Parser;
use http::StatusCode;
use platform_testkit::{Platform, access_log, assert_shipping_metrics, serve_shipping_logs};
use service_kit::CancellationToken;
use service_kit::log_shipping::Shipper;

use crate::support::{ISSUER, echo_upstream};

const SECRET: &str = "tsc_the-gateway-secret-used-by-this-test-only";

const ROUTES: &str = r"
version: 1
routes:
  - name: public
    match: { prefix: /pub/ }
    rewrite_prefix: /
    upstreams: [http://{upstream}]
    auth: public
  - name: private
    match: { prefix: /private/ }
    rewrite_prefix: /
    upstreams: [http://{upstream}]
    auth: authenticated
";

/// A gateway shipping its logs, as `main` starts it, returning its public and admin base
/// URLs and the shipper; the shipping layer stays installed for this thread while the
/// guard lives.
async fn start_gateway(
    platform: &Platform,
    dir: &std::path::Path,
    shutdown: &CancellationToken,
) -> (String, String, Shipper, tracing::subscriber::DefaultGuard) {
    let (upstream, _) = echo_upstream().await;
    let routes_file = dir.join("routes.yaml");
    std::fs::write(
        &routes_file,
        ROUTES.replace("{upstream}", &upstream.to_string()),
    )
    .expect("write routes");
    let config = tessera_gateway::config::Config::try_parse_from([
        "tessera-gateway",
        "--routes-file",
        &routes_file.display().to_string(),
        "--jwks-url",
        &format!("{}/.well-known/jwks.json", platform.identity),
        "--issuer",
        ISSUER,
        "--log-endpoint",
        &format!("{}/v1/logs", platform.logging.base),
        "--token-url",
        &format!("{}/oauth2/token", platform.identity),
        "--client-secret",
        SECRET,
    ])
    .expect("valid gateway config");

    let token = tessera_gateway::log_token_source(&config)
        .expect("valid token settings")
        .expect("a client-credentials source");
    let (shipper, guard) =
        platform_testkit::ship_logs_on_this_thread(&config.log_shipping, "gateway", token);
    let endpoints = serve_shipping_logs(
        tessera_gateway::run_shipping_logs,
        config,
        shutdown,
        &shipper,
    )
    .await;
    (endpoints.base, endpoints.admin, shipper, guard)
}

#[tokio::test]
async fn with_a_log_endpoint_a_request_s_log_records_arrive_in_logging_with_its_request_id() {
    testkit::init_logs();
    let platform = Platform::start(ISSUER, "gateway", SECRET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let (base, admin, shipper, _guard) = start_gateway(&platform, dir.path(), &shutdown).await;

    let http = reqwest::Client::new();
    let request_id = format!("gw-{}", uuid::Uuid::new_v4().simple());
    let response = http
        .get(format!("{base}/pub/hello"))
        .header("x-request-id", &request_id)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);

    let finished = access_log(&platform.logging, &platform.reader, "gateway", &request_id).await;
    assert_eq!(finished["request_id"], request_id.as_str());
    assert_eq!(finished["service"], "gateway");
    assert_eq!(finished["attributes"]["status"], 200);
    // The access line names the route and the endpoint that answered (issue #4).
    assert_eq!(finished["attributes"]["route"], "public");
    let upstream = finished["attributes"]["upstream"]
        .as_str()
        .expect("upstream");
    assert!(upstream.starts_with("http://127.0.0.1:"), "{upstream}");
    assert!(finished["attributes"].get("subject").is_none());

    // On a protected route, the token's subject too.
    let (user_id, token) =
        platform_testkit::new_user(&http, &platform.identity, "access-line@example.com").await;
    let private_id = format!("gw-{}", uuid::Uuid::new_v4().simple());
    let response = http
        .get(format!("{base}/private/hello"))
        .header("x-request-id", &private_id)
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let finished = access_log(&platform.logging, &platform.reader, "gateway", &private_id).await;
    assert_eq!(finished["attributes"]["route"], "private");
    assert_eq!(finished["attributes"]["subject"], user_id.as_str());
    assert!(shipper.shipped() > 0);
    assert_shipping_metrics(&admin).await;
    shutdown.cancel();
}

#[test]
fn a_token_url_without_a_client_secret_is_a_configuration_error() {
    let config = tessera_gateway::config::Config::try_parse_from([
        "tessera-gateway",
        "--routes-file",
        "routes.yaml",
        "--jwks-url",
        "http://identity/.well-known/jwks.json",
        "--issuer",
        ISSUER,
        "--log-endpoint",
        "http://logging/v1/logs",
        "--token-url",
        "http://identity/oauth2/token",
    ])
    .expect("parses");
    let error = tessera_gateway::log_token_source(&config).expect_err("refused");
    assert_eq!(
        error.to_string(),
        "configuration error: --token-url needs --client-secret / TESSERA_CLIENT_SECRET"
    );
}
