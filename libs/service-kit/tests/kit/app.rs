//! A small service built on the kit, the way a Tessera service uses it: notes stored in
//! the database, plus endpoints that expose what the kit gives a handler.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use service_kit::{
    ApiJson, CancellationToken, Database, DatabaseUrl, HttpSettings, Listeners, Migrations, Pool,
    Problem, RequestContext, Service,
};
use tokio::task::JoinHandle;

pub(crate) fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!("tests/kit/migrations/sqlite"),
        postgres: sqlx::migrate!("tests/kit/migrations/postgres"),
    }
}

#[derive(Debug, Deserialize)]
struct NewNote {
    text: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Note {
    pub(crate) id: i64,
    pub(crate) text: String,
}

async fn create_note(
    State(db): State<Database>,
    ApiJson(note): ApiJson<NewNote>,
) -> Result<(StatusCode, Json<Note>), Problem> {
    if note.text.trim().is_empty() {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "empty_text").detail("text is empty"));
    }
    let id: i64 = match db.pool() {
        Pool::Sqlite(pool) => {
            sqlx::query_scalar("INSERT INTO notes (text) VALUES ($1) RETURNING id")
                .bind(&note.text)
                .fetch_one(pool)
                .await
        }
        Pool::Postgres(pool) => {
            sqlx::query_scalar("INSERT INTO notes (text) VALUES ($1) RETURNING id")
                .bind(&note.text)
                .fetch_one(pool)
                .await
        }
    }
    .map_err(|error| {
        tracing::error!(%error, "insert failed");
        Problem::internal()
    })?;
    Ok((
        StatusCode::CREATED,
        Json(Note {
            id,
            text: note.text,
        }),
    ))
}

async fn list_notes(State(db): State<Database>) -> Result<Json<Vec<Note>>, Problem> {
    let rows: Vec<(i64, String)> = match db.pool() {
        Pool::Sqlite(pool) => {
            sqlx::query_as("SELECT id, text FROM notes ORDER BY id")
                .fetch_all(pool)
                .await
        }
        Pool::Postgres(pool) => {
            sqlx::query_as("SELECT id, text FROM notes ORDER BY id")
                .fetch_all(pool)
                .await
        }
    }
    .map_err(|_| Problem::internal())?;
    Ok(Json(
        rows.into_iter()
            .map(|(id, text)| Note { id, text })
            .collect(),
    ))
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Seen {
    pub(crate) request_id: String,
    pub(crate) trace_id: String,
    pub(crate) parent_span_id: Option<String>,
    pub(crate) outgoing_traceparent: String,
}

async fn context(Extension(ctx): Extension<RequestContext>) -> Json<Seen> {
    Json(Seen {
        request_id: ctx.request_id.clone(),
        trace_id: ctx.trace.trace_id(),
        parent_span_id: ctx.trace.parent_span_id(),
        outgoing_traceparent: ctx.trace.traceparent(),
    })
}

#[derive(Debug, Deserialize)]
struct SleepFor {
    ms: u64,
}

/// Sleeps `ms`, counting itself in the app's [`TestApp::sleeping`] first.
async fn sleep(
    Extension(sleeping): Extension<Arc<AtomicUsize>>,
    Query(SleepFor { ms }): Query<SleepFor>,
) -> &'static str {
    sleeping.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slept"
}

async fn panic() -> &'static str {
    panic!("secret detail that must not reach the client")
}

/// A running test service.
pub(crate) struct TestApp {
    pub(crate) public: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) shutdown: CancellationToken,
    pub(crate) server: JoinHandle<()>,
    pub(crate) http: reqwest::Client,
    /// `/sleep` requests that reached their handler: a test knows one is in flight.
    sleeping: Arc<AtomicUsize>,
}

impl TestApp {
    pub(crate) async fn spawn(url: DatabaseUrl, settings: HttpSettings) -> Self {
        let shutdown = CancellationToken::new();
        let sleeping = Arc::new(AtomicUsize::new(0));
        let db = Database::open(&url, 5, migrations(), shutdown.clone()).expect("pool");
        let router = Router::new()
            .route("/notes", get(list_notes).post(create_note))
            .with_state(db.clone())
            .route("/context", get(context))
            .route("/sleep", get(sleep))
            .route("/panic", get(panic))
            .layer(Extension(sleeping.clone()));
        let service = Service::new("kit-test", settings).public(router);
        db.add_readiness_check(service.readiness());
        let listeners = Listeners::loopback().await.expect("bind");
        let public = listeners.public_addr().expect("addr");
        let admin = listeners.admin_addr().expect("addr");
        let server = tokio::spawn(service.serve(listeners, shutdown.clone()));
        Self {
            public,
            admin,
            shutdown,
            server,
            http: reqwest::Client::new(),
            sleeping,
        }
    }

    pub(crate) async fn sqlite() -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = Self::spawn(
            DatabaseUrl::sqlite(dir.path().join("nested/dir/kit.db")),
            HttpSettings::default(),
        )
        .await;
        (app, dir)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Waits until a `/sleep` request has reached its handler: from then on it is in
    /// flight, whatever a loaded machine did to the time it took to get there.
    pub(crate) async fn wait_until_sleeping(&self) {
        testkit::eventually(
            Duration::from_secs(30),
            "a /sleep request in flight",
            || {
                let sleeping = self.sleeping.load(Ordering::SeqCst);
                async move { (sleeping > 0).then_some(()) }
            },
        )
        .await;
    }

    /// Waits until `/readyz` answers 200.
    pub(crate) async fn ready(&self) {
        testkit::eventually(Duration::from_secs(10), "/readyz to answer 200", || async {
            let response = self.http.get(self.admin_url("/readyz")).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        })
        .await;
    }
}
