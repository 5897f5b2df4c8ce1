//! Listeners, probes, and graceful shutdown.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;
use service_kit::{DatabaseUrl, HttpSettings};

use crate::app::TestApp;

#[tokio::test]
async fn probes_answer_on_the_admin_listener_and_not_on_the_public_one() {
    let (app, _dir) = TestApp::sqlite().await;
    app.ready().await;
    let live = app
        .http
        .get(app.admin_url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(live.status(), StatusCode::OK);
    let ready: Value = app
        .http
        .get(app.admin_url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["checks"]["database"]["ok"], true);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let public = app.http.get(app.url(path)).send().await.expect("public");
        assert_eq!(
            public.status(),
            StatusCode::NOT_FOUND,
            "{path} is exposed publicly"
        );
    }
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_then_stops_accepting() {
    let (app, _dir) = TestApp::sqlite().await;
    app.ready().await;
    let in_flight = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/sleep?ms=600"));
        async move { http.get(url).send().await }
    });
    app.wait_until_sleeping().await;
    app.shutdown.cancel();

    let response = in_flight
        .await
        .expect("join")
        .expect("the in-flight request was answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "slept");
    let url = app.url("/notes");
    app.server.await.expect("clean stop");
    let refused = reqwest::Client::new().get(url).send().await;
    assert!(refused.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn requests_still_running_at_the_drain_timeout_are_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = HttpSettings {
        drain_timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    };
    let app = TestApp::spawn(DatabaseUrl::sqlite(dir.path().join("a.db")), settings).await;
    app.ready().await;
    let stuck = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/sleep?ms=20000"));
        async move { http.get(url).send().await }
    });
    app.wait_until_sleeping().await;
    let started = Instant::now();
    app.shutdown.cancel();
    app.server.await.expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    assert!(
        stuck.await.expect("join").is_err(),
        "the stuck request was not cut"
    );
}
