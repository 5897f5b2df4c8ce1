//! The client-credentials token source against a small local token endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde_json::json;
use tessera_auth::{ClientCredentials, TokenSourceError};

use crate::support::serve;

#[derive(Default)]
struct Endpoint {
    requests: AtomicUsize,
    expires_in: u64,
    delay: Duration,
    refuse: bool,
    seen: Mutex<Vec<(HeaderMap, String)>>,
}

async fn token(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let n = endpoint.requests.fetch_add(1, Ordering::SeqCst) + 1;
    endpoint.seen.lock().unwrap().push((headers, body));
    tokio::time::sleep(endpoint.delay).await;
    if endpoint.refuse {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    axum::Json(json!({
        "access_token": format!("token-{n}"), "token_type": "Bearer",
        "expires_in": endpoint.expires_in
    }))
    .into_response()
}

async fn start(endpoint: Endpoint) -> (Arc<Endpoint>, ClientCredentials) {
    let endpoint = Arc::new(endpoint);
    let router = Router::new()
        .route("/oauth2/token", post(token))
        .with_state(Arc::clone(&endpoint));
    let addr = serve(router).await;
    let source = ClientCredentials::new(
        format!("http://{addr}/oauth2/token"),
        "svc-profile",
        SecretString::from("s3cret+/="),
    );
    (endpoint, source)
}

fn requests(endpoint: &Endpoint) -> usize {
    endpoint.requests.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_token_is_reused_while_it_is_fresh() {
    let (endpoint, source) = start(Endpoint {
        expires_in: 900,
        ..Endpoint::default()
    })
    .await;
    assert_eq!(source.token().await.unwrap(), "token-1");
    assert_eq!(source.token().await.unwrap(), "token-1");
    assert_eq!(requests(&endpoint), 1);
}

#[tokio::test]
async fn a_token_is_renewed_once_80_percent_of_its_lifetime_has_passed() {
    let (endpoint, source) = start(Endpoint {
        // 5 s: the check at 20 % has 3 s to spare before 80 % on a loaded machine (at 2 s
        // it had 600 ms).
        expires_in: 5,
        ..Endpoint::default()
    })
    .await;
    assert_eq!(source.token().await.unwrap(), "token-1");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        source.token().await.unwrap(),
        "token-1",
        "still fresh at 20 %"
    );
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(
        source.token().await.unwrap(),
        "token-2",
        "renewed past 80 %"
    );
    assert_eq!(requests(&endpoint), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_token_request() {
    let (endpoint, source) = start(Endpoint {
        expires_in: 900,
        delay: Duration::from_millis(200),
        ..Endpoint::default()
    })
    .await;
    let source = Arc::new(source);
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let source = Arc::clone(&source);
            tokio::spawn(async move { source.token().await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "token-1");
    }
    assert_eq!(requests(&endpoint), 1);
}

#[tokio::test]
async fn the_request_uses_http_basic_with_form_encoded_credentials() {
    let (endpoint, source) = start(Endpoint {
        expires_in: 900,
        ..Endpoint::default()
    })
    .await;
    source.token().await.unwrap();
    let seen = endpoint.seen.lock().unwrap();
    let (headers, body) = &seen[0];
    let expected = format!("Basic {}", STANDARD.encode("svc-profile:s3cret%2B%2F%3D"));
    assert_eq!(headers["authorization"], expected.as_str());
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(body, "grant_type=client_credentials");
}

#[tokio::test]
async fn a_refused_client_gets_an_error_naming_the_oauth_error_and_nothing_is_cached() {
    let (endpoint, source) = start(Endpoint {
        refuse: true,
        ..Endpoint::default()
    })
    .await;
    for _ in 0..2 {
        match source.token().await {
            Err(TokenSourceError::Rejected { status, error }) => {
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                assert_eq!(error.as_deref(), Some("invalid_client"));
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
    assert_eq!(requests(&endpoint), 2);
}

#[tokio::test]
async fn invalidate_forces_a_new_token() {
    let (endpoint, source) = start(Endpoint {
        expires_in: 900,
        ..Endpoint::default()
    })
    .await;
    assert_eq!(source.token().await.unwrap(), "token-1");
    source.invalidate();
    assert_eq!(source.token().await.unwrap(), "token-2");
    assert_eq!(requests(&endpoint), 2);
}
