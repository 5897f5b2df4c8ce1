//! The upstream servers the proxy tests talk to: counting, failing, slow, echoing,
//! streaming and WebSocket-echoing axum apps on loopback ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `Sec-WebSocket-Key` of RFC 6455's example handshake and its accept value (§1.3);
/// using the RFC's pair spares the tests a SHA-1 implementation.
pub(super) const WEBSOCKET_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub(super) const WEBSOCKET_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Serves `router` on a loopback port until the test ends (HTTP/1.1 and h2c with prior
/// knowledge: axum serves through hyper-util's auto builder, with upgrades).
pub(super) async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    addr
}

/// A server whose every request is counted and answered by `respond`.
#[derive(Debug, Clone)]
pub(super) struct Backend {
    pub(super) addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Backend {
    pub(super) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Starts a counting server answering with `respond(request)`.
pub(super) async fn backend<F, Fut>(respond: F) -> Backend
where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    backend_on(listener, respond)
}

/// Like [`backend`], on a listener the test already bound (e.g. a port that was closed).
pub(super) fn backend_on<F, Fut>(listener: tokio::net::TcpListener, respond: F) -> Backend
where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().fallback(move |request: Request| {
        counter.fetch_add(1, Ordering::SeqCst);
        respond(request)
    });
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    Backend { addr, hits }
}

/// Answers every request with `status` and a short body.
pub(super) async fn answering(status: StatusCode) -> Backend {
    backend(move |_| async move { (status, "from backend").into_response() }).await
}

/// Answers 503 until `healthy` is set, then 200.
pub(super) async fn switchable(healthy: Arc<AtomicBool>) -> Backend {
    backend(move |_| {
        let healthy = healthy.load(Ordering::SeqCst);
        async move {
            if healthy {
                (StatusCode::OK, "recovered").into_response()
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response()
            }
        }
    })
    .await
}

/// Waits `delay` before answering 200.
pub(super) async fn slow(delay: Duration) -> Backend {
    backend(move |_| async move {
        tokio::time::sleep(delay).await;
        "slow answer".into_response()
    })
    .await
}

/// Answers with the method, HTTP version, body length and every request header as JSON,
/// and sets hop-by-hop headers on its response that the proxy must strip.
pub(super) async fn echo() -> Backend {
    backend(|request: Request| async move {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let mut headers = Map::new();
        for name in parts.headers.keys() {
            let values: Vec<Value> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| Value::String(v.to_str().unwrap_or("?").to_owned()))
                .collect();
            headers.insert(name.to_string(), Value::Array(values));
        }
        let report = serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path_and_query().map(http::uri::PathAndQuery::as_str),
            "version": format!("{:?}", parts.version),
            "body_len": body.len(),
            "headers": headers,
        });
        Response::builder()
            .header("content-type", "application/json")
            .header("connection", "x-response-hop")
            .header("x-response-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("x-response-kept", "1")
            .body(Body::from(report.to_string()))
            .expect("response")
    })
    .await
}

/// Accepts WebSocket handshakes (only with RFC 6455's example key, and only when the
/// upgrade headers arrived) and echoes every byte back; the proxy is byte-transparent, so
/// echoing bytes is echoing frames.
pub(super) async fn websocket_echo() -> Backend {
    backend(|mut request: Request| async move {
        let headers = request.headers();
        let asks_upgrade = headers
            .get("connection")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
            && headers.get("upgrade").is_some_and(|v| v == "websocket")
            && headers
                .get("sec-websocket-key")
                .is_some_and(|v| v == WEBSOCKET_KEY);
        if !asks_upgrade {
            return (StatusCode::BAD_REQUEST, "not a websocket handshake").into_response();
        }
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buffer = [0u8; 4096];
            while let Ok(read) = io.read(&mut buffer).await {
                if read == 0 || io.write_all(&buffer[..read]).await.is_err() {
                    break;
                }
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", WEBSOCKET_ACCEPT)
            .body(Body::empty())
            .expect("response")
    })
    .await
}
