//! The stand-in for the SMS and push providers (DESIGN.md §8: mocks only for what cannot
//! run here): a loopback HTTP server that answers 202 and records every request.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One request a provider received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `sms` or `push` (the path it was posted to).
    pub channel: String,
    /// Its `Authorization` header, if any (the provider credentials notification sends).
    pub authorization: Option<String>,
    /// The JSON body notification sent (`{id, channel, to, title, body}`).
    pub body: Value,
}

type Requests = Arc<Mutex<Vec<Recorded>>>;

/// The running recorder; stops on drop.
#[derive(Debug)]
pub struct Recorder {
    url: String,
    requests: Requests,
    task: tokio::task::JoinHandle<()>,
}

async fn record(
    State(requests): State<Requests>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Recorded {
            channel,
            authorization,
            body,
        });
    StatusCode::ACCEPTED
}

impl Recorder {
    /// Binds a loopback port and serves `POST /{channel}`.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> Self {
        let requests = Requests::default();
        let app = axum::Router::new()
            .route("/{channel}", axum::routing::post(record))
            .with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recorder");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            requests,
            task,
        }
    }

    /// Its base URL (`/sms` and `/push` are under it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
