//! Pools, migrations and readiness against real SQLite files and PostgreSQL.

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use service_kit::{Database, DatabaseUrl, HttpSettings, Pool};
use sqlx::Connection;

use crate::app::{Note, TestApp, migrations};

async fn create_and_list(app: &TestApp) -> Vec<Note> {
    let created = app
        .http
        .post(app.url("/notes"))
        .json(&serde_json::json!({ "text": "hello" }))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), StatusCode::CREATED);
    let notes = app.http.get(app.url("/notes")).send().await.expect("get");
    notes.json().await.expect("json")
}

#[tokio::test]
async fn a_sqlite_service_creates_its_file_and_directory_migrates_and_stores_data() {
    let (app, dir) = TestApp::sqlite().await;
    app.ready().await;
    let notes = create_and_list(&app).await;
    assert_eq!(
        notes,
        vec![Note {
            id: 1,
            text: "hello".into()
        }]
    );
    assert!(dir.path().join("nested/dir/kit.db").exists());
}

#[tokio::test]
async fn sqlite_databases_use_write_ahead_logging_and_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = DatabaseUrl::sqlite(dir.path().join("wal.db"));
    let db = Database::open_now(&url, 2, &migrations())
        .await
        .expect("open");
    let Pool::Sqlite(pool) = db.pool() else {
        panic!("expected SQLite")
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .expect("q");
    let fks: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .expect("q");
    assert_eq!((mode.as_str(), fks), ("wal", 1));
}

#[tokio::test]
async fn a_postgres_service_migrates_stores_data_and_keeps_it_across_restarts() {
    let url: DatabaseUrl = testkit::fresh_postgres_database()
        .await
        .parse()
        .expect("url");
    let app = TestApp::spawn(url.clone(), HttpSettings::default()).await;
    app.ready().await;
    assert_eq!(create_and_list(&app).await.len(), 1);
    app.shutdown.cancel();
    app.server.await.expect("clean stop");

    // Running the same migrations again is a no-op; the data is still there.
    let again = TestApp::spawn(url, HttpSettings::default()).await;
    again.ready().await;
    assert_eq!(create_and_list(&again).await.len(), 2);
}

#[tokio::test]
async fn an_unreachable_database_fails_readiness_then_is_retried_until_it_exists() {
    let admin_url = testkit::postgres_admin_url();
    let name = format!("late_{}", uuid::Uuid::new_v4().simple());
    let url = testkit::database_url_with_name(&admin_url, &name);
    let app = TestApp::spawn(url.parse().expect("url"), HttpSettings::default()).await;

    // The process is alive and says why it is not ready.
    let live = app
        .http
        .get(app.admin_url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(live.status(), StatusCode::OK);
    // The first failed connection attempt reports it; 30 s of slack for a loaded machine.
    let report = testkit::eventually(Duration::from_secs(30), "a database error", || async {
        let response = app.http.get(app.admin_url("/readyz")).send().await.ok()?;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = response.json().await.ok()?;
        body["checks"]["database"]["error"]
            .as_str()
            .map(str::to_owned)
            .filter(|e| e.contains("does not exist"))
    })
    .await;
    assert!(report.contains(&name), "{report}");

    // Once the database appears, the background retry migrates it without a restart.
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("admin");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create");
    app.ready().await;
    assert_eq!(create_and_list(&app).await.len(), 1);
}

#[tokio::test]
async fn a_database_that_never_answers_keeps_the_service_alive_but_not_ready() {
    // Port 1 on loopback: connection refused at once, every time.
    let url: DatabaseUrl = "postgres://tessera:secret-pw@127.0.0.1:1/none"
        .parse()
        .expect("url");
    let app = TestApp::spawn(url, HttpSettings::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = app
        .http
        .get(app.admin_url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.text().await.expect("body");
    assert!(!body.contains("secret-pw"), "{body}");
    let create = app
        .http
        .post(app.url("/notes"))
        .json(&serde_json::json!({ "text": "x" }))
        .send()
        .await
        .expect("post");
    // The request fails as a server error with an opaque body, and the service stays up.
    assert_eq!(create.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let live = app
        .http
        .get(app.admin_url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(live.status(), StatusCode::OK);
}
