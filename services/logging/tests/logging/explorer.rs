//! The explorer page in real headless Chromium (the Debian package): records ingested
//! over OTLP are shown, filters from the address narrow them, a request id shows the
//! whole request across services, and a screenshot renders.

use std::path::Path;
use std::time::Duration;

use crate::support::{Backend, TestLogging, attribute, export_request, record};

/// Flags for a quiet, self-contained headless Chromium.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,900",
    // Lets the page's fetches finish before the DOM is dumped or the shot taken.
    "--virtual-time-budget=15000",
];

/// Runs Chromium on `url` with `extra` flags and a fresh profile; returns stdout.
async fn chromium(profile: &Path, url: &str, extra: &[String]) -> String {
    let binary =
        std::env::var("TESSERA_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut command = tokio::process::Command::new(&binary);
    command
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("Chromium finishes within 60 s")
        .unwrap_or_else(|e| panic!("cannot run {binary} (tools/services up installs it): {e}"));
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn dom(app: &TestLogging, query: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    chromium(
        profile.path(),
        &app.url(&format!("/explorer/{query}")),
        &["--dump-dom".to_owned()],
    )
    .await
}

async fn seed(app: &TestLogging) {
    let gateway = export_request(
        "gateway",
        vec![
            record(
                "GET /v1/profile answered 200",
                9,
                vec![attribute("request_id", "req-explore")],
            ),
            record("route table reloaded", 9, vec![]),
        ],
    );
    let profile = export_request(
        "profile",
        vec![
            record(
                "profile loaded for user 7",
                9,
                vec![attribute("request_id", "req-explore")],
            ),
            record("slow query on profiles", 13, vec![]),
        ],
    );
    for request in [gateway, profile] {
        assert_eq!(app.export(&request).await.status(), 200);
    }
}

#[tokio::test]
async fn the_explorer_page_shows_records_filters_them_and_follows_a_request() {
    let app = TestLogging::start(Backend::Sqlite, &["--insecure-disable-auth"]).await;
    seed(&app).await;

    let all = dom(&app, "").await;
    for body in [
        "GET /v1/profile answered 200",
        "route table reloaded",
        "profile loaded for user 7",
        "slow query on profiles",
    ] {
        assert!(all.contains(body), "{body} not shown:\n{all}");
    }
    assert!(all.contains("4 records"), "{all}");
    assert!(all.contains("<rect"), "the histogram has bars");

    let profile_only = dom(&app, "?service=profile").await;
    assert!(profile_only.contains("profile loaded for user 7"));
    assert!(
        !profile_only.contains("route table reloaded"),
        "{profile_only}"
    );
    assert!(profile_only.contains("2 records"));

    let warnings = dom(&app, "?min_severity=warn").await;
    assert!(warnings.contains("slow query on profiles"));
    assert!(warnings.contains("1 record<"), "{warnings}");

    // The request id link's target: the whole request, across both services.
    assert!(
        all.contains("href=\"?request_id=req-explore\""),
        "request ids are links"
    );
    let request = dom(&app, "?request_id=req-explore").await;
    assert!(request.contains("GET /v1/profile answered 200"));
    assert!(request.contains("profile loaded for user 7"));
    assert!(!request.contains("slow query on profiles"));
}

#[tokio::test]
async fn a_screenshot_of_the_explorer_renders() {
    let app = TestLogging::start(Backend::Sqlite, &["--insecure-disable-auth"]).await;
    seed(&app).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let shot = profile.path().join("explorer.png");
    chromium(
        profile.path(),
        &app.url("/explorer/"),
        &[format!("--screenshot={}", shot.display())],
    )
    .await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 10_000,
        "a rendered page, not a blank one: {} bytes",
        png.len()
    );
}
