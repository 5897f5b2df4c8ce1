//! The explorer page in real headless Chromium (the Debian package): records ingested
//! over OTLP are shown, filters from the address narrow them, clicking a request id
//! shows the whole request across services, live tail adds new records, and a
//! screenshot renders. The clicks are real mouse events sent over Chromium's debugging protocol
//! (`cdp.rs`).

use std::path::Path;
use std::time::Duration;

use crate::cdp::{Browser, Tab};
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
    // Lets the page's fetches finish before the DOM is dumped. Must stay last: the
    // DevTools-driven test leaves it out (it waits for the page itself).
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

/// The ids in this test's records: one request across three services, and another.
const REQUEST: &str = "req-4711";
const OTHER: &str = "req-other";

async fn seed_three_services(app: &TestLogging) {
    let with = |id: &str| vec![attribute("request_id", id)];
    let requests = [
        export_request(
            "gateway",
            vec![
                record("POST /v1/orders answered 201", 9, with(REQUEST)),
                record("health check passed", 9, vec![]),
            ],
        ),
        export_request(
            "identity",
            vec![
                record("token verified for user 7", 9, with(REQUEST)),
                record("signing key rotated", 9, with(OTHER)),
            ],
        ),
        export_request(
            "orders",
            vec![
                record("order 9 created", 9, with(REQUEST)),
                record("stock low for item 3", 13, with(OTHER)),
            ],
        ),
    ];
    for request in &requests {
        assert_eq!(app.export(request).await.status(), 200);
    }
}

/// `[service, body]` of every row the page lists, top to bottom.
const ROWS: &str = "[...document.querySelectorAll('#records tr.record')]\
    .map(r => [r.dataset.service, r.querySelector('td.body').textContent])";

#[tokio::test]
async fn clicking_a_request_id_shows_that_request_across_services_and_live_tail_adds_new_records() {
    let app = TestLogging::start(Backend::Sqlite, &["--insecure-disable-auth"]).await;
    seed_three_services(&app).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = Browser::launch(&CHROMIUM_FLAGS[..CHROMIUM_FLAGS.len() - 1], profile.path());
    let tab = browser.open(&app.url("/explorer/")).await;
    let status = "document.getElementById('status')?.textContent";
    tab.wait_for(
        &format!("{status} === '6 records'"),
        "all six records listed",
        status,
    )
    .await;

    // A real mouse click on the request id link of the gateway's record.
    tab.click(&format!(
        "[...document.querySelectorAll('a.id[data-field=request_id]')]\
         .find(a => a.textContent === '{REQUEST}' && a.closest('tr').dataset.service === 'gateway')"
    ))
    .await;
    tab.wait_for(
        &format!("{status} === '3 records'"),
        "the request's records listed",
        ROWS,
    )
    .await;
    let mut rows: Vec<(String, String)> =
        serde_json::from_value(tab.eval(ROWS).await).expect("rows");
    rows.sort();
    assert_eq!(
        rows,
        [
            ("gateway", "POST /v1/orders answered 201"),
            ("identity", "token verified for user 7"),
            ("orders", "order 9 created"),
        ]
        .map(|(s, b)| (s.to_owned(), b.to_owned())),
        "exactly the request's records, from all three services"
    );
    assert_eq!(
        tab.eval("location.search").await,
        format!("?request_id={REQUEST}"),
        "the address reproduces the view"
    );
    assert_eq!(
        tab.eval("document.querySelector('input[name=request_id]').value")
            .await,
        REQUEST
    );

    live_tail_adds_the_new_record_of_this_request(&app, &tab).await;

    let png = tab.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 10_000,
        "a rendered page, not a blank one: {} bytes",
        png.len()
    );
}

/// Live tail on: a record of this request ingested now appears at the top; one of
/// another request, ingested just before it, does not.
async fn live_tail_adds_the_new_record_of_this_request(app: &TestLogging, tab: &Tab<'_>) {
    tab.click("document.getElementById('live')").await;
    assert_eq!(
        tab.eval("document.getElementById('live').checked").await,
        true
    );
    testkit::eventually(
        Duration::from_secs(60),
        "the page's live tail to connect",
        || async { (app.state.ingest.tail_subscribers() > 0).then_some(()) },
    )
    .await;
    let unrelated = export_request(
        "gateway",
        vec![record(
            "GET /v1/stock answered 200",
            9,
            vec![attribute("request_id", OTHER)],
        )],
    );
    assert_eq!(app.export(&unrelated).await.status(), 200);
    let new = export_request(
        "orders",
        vec![record(
            "order 9 paid",
            9,
            vec![attribute("request_id", REQUEST)],
        )],
    );
    assert_eq!(app.export(&new).await.status(), 200);
    tab.wait_for(
        "document.querySelector('#records tr.record.live td.body')?.textContent === 'order 9 paid'",
        "the new record shown by live tail",
        ROWS,
    )
    .await;
    let rows: Vec<(String, String)> = serde_json::from_value(tab.eval(ROWS).await).expect("rows");
    assert_eq!(rows.len(), 4, "one record added: {rows:?}");
    assert_eq!(rows[0], ("orders".to_owned(), "order 9 paid".to_owned()));
    assert!(
        !rows.iter().any(|(_, body)| body.contains("stock")),
        "another request's record is not tailed into this view: {rows:?}"
    );
    assert!(
        tab.eval("location.search")
            .await
            .as_str()
            .is_some_and(|q| q.contains("live=1")),
        "live tail is kept in the address"
    );
}
