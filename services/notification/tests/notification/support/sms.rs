//! The stand-in SMS provider: an HTTP server recording every request it receives.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use http::StatusCode;
use serde_json::Value;
use service_kit::CancellationToken;

/// (Authorization header, JSON body) of each request the SMS provider received.
type Requests = Arc<Mutex<Vec<(Option<String>, Value)>>>;

async fn record(
    State(requests): State<Requests>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    requests.lock().unwrap().push((auth, body));
    StatusCode::ACCEPTED
}

/// The stand-in SMS provider: records every request.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    pub(crate) url: String,
    requests: Requests,
}

impl Recorder {
    pub(crate) async fn start(shutdown: &CancellationToken) -> Self {
        let requests = Requests::default();
        let app = axum::Router::new()
            .route("/sms", axum::routing::post(record))
            .with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/sms", listener.local_addr().expect("addr"));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Self { url, requests }
    }

    /// (Authorization header, JSON body) of every request.
    pub(crate) fn requests(&self) -> Vec<(Option<String>, Value)> {
        self.requests.lock().unwrap().clone()
    }
}
