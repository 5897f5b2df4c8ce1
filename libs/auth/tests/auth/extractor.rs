//! The `Authenticated` extractor in a real axum router, as a service uses it.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tessera_auth::{AuthError, Authenticated, StaticJwks, Verifier};
use tessera_keys::Algorithm;

use crate::support::{TestKey, claims, claims_with, config, jwks, now, serve};

async fn me(Authenticated(caller): Authenticated) -> axum::Json<Value> {
    axum::Json(json!({"sub": caller.subject, "roles": caller.roles, "jti": caller.token_id}))
}

async fn admin(Authenticated(caller): Authenticated) -> Result<&'static str, AuthError> {
    caller.require_role("admin")?;
    Ok("welcome, admin")
}

async fn optional(caller: Option<Authenticated>) -> String {
    caller.map_or_else(|| "anonymous".to_owned(), |Authenticated(p)| p.subject)
}

struct App {
    base: String,
    key: TestKey,
    http: reqwest::Client,
}

/// A service whose verifier has loaded its keys when `ready`.
async fn app(ready: bool) -> App {
    let key = TestKey::generate(Algorithm::EdDSA);
    let verifier = Verifier::new(config(), Arc::new(StaticJwks::new(jwks(&[&key]))));
    if ready {
        verifier.refresh().await.unwrap();
    }
    let router = Router::new()
        .route("/me", get(me))
        .route("/admin", get(admin))
        .route("/optional", get(optional))
        .with_state(verifier);
    let addr = serve(router).await;
    App {
        base: format!("http://{addr}"),
        key,
        http: reqwest::Client::new(),
    }
}

impl App {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn bearer(&self, claims: &Value) -> String {
        format!("Bearer {}", self.key.sign(claims))
    }
}

async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_valid_token_lets_the_handler_see_the_caller() {
    let app = app(true).await;
    let response = app
        .get("/me")
        .header(AUTHORIZATION, app.bearer(&claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"sub": "u-1", "roles": ["user"], "jti": "tok-1"})
    );
}

#[tokio::test]
async fn a_request_without_a_token_gets_401_with_a_bearer_challenge() {
    let app = app(true).await;
    // Identity headers a proxy might set are never believed.
    let response = app
        .get("/me")
        .header("X-User-Id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(problem(response).await["code"], "missing_token");
}

#[tokio::test]
async fn an_invalid_token_gets_401_invalid_token_without_saying_why() {
    let app = app(true).await;
    let expired = app.bearer(&claims_with("exp", json!(now() - 3600)));
    let response = app
        .get("/me")
        .header(AUTHORIZATION, expired)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token""#
    );
    let body = problem(response).await;
    assert_eq!(body["code"], "invalid_token");
    let forged = format!("Bearer {}x", app.key.sign(&claims()));
    let response = app
        .get("/me")
        .header(AUTHORIZATION, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(response).await,
        body,
        "an expired and a forged token look alike"
    );
}

#[tokio::test]
async fn two_authorization_headers_are_refused_with_400() {
    let app = app(true).await;
    let response = app
        .get("/me")
        .header(AUTHORIZATION, app.bearer(&claims()))
        .header(AUTHORIZATION, app.bearer(&claims_with("sub", json!("u-2"))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(problem(response).await["code"], "multiple_credentials");
}

#[tokio::test]
async fn a_header_plus_an_access_token_query_parameter_is_refused_with_400() {
    let app = app(true).await;
    let token = app.key.sign(&claims());
    for query in [
        format!("access_token={token}"),
        format!("a=1&access%5Ftoken={token}"),
    ] {
        let response = app
            .get(&format!("/me?{query}"))
            .header(AUTHORIZATION, app.bearer(&claims()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
    }
}

#[tokio::test]
async fn a_token_in_the_query_alone_is_not_accepted() {
    let app = app(true).await;
    let token = app.key.sign(&claims());
    let response = app
        .get(&format!("/me?access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn before_the_keys_are_loaded_the_answer_is_503_with_retry_after() {
    let app = app(false).await;
    let response = app
        .get("/me")
        .header(AUTHORIZATION, app.bearer(&claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[RETRY_AFTER], "5");
    assert_eq!(problem(response).await["code"], "auth_unavailable");
}

#[tokio::test]
async fn a_caller_without_the_required_role_gets_403() {
    let app = app(true).await;
    let response = app
        .get("/admin")
        .header(AUTHORIZATION, app.bearer(&claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(problem(response).await["code"], "forbidden");
    let admin = app.bearer(&claims_with("roles", json!(["user", "admin"])));
    let response = app
        .get("/admin")
        .header(AUTHORIZATION, admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_optional_caller_is_none_without_credentials_but_bad_credentials_still_fail() {
    let app = app(true).await;
    let anonymous = app.get("/optional").send().await.unwrap();
    assert_eq!(anonymous.text().await.unwrap(), "anonymous");
    let known = app
        .get("/optional")
        .header(AUTHORIZATION, app.bearer(&claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(known.text().await.unwrap(), "u-1");
    let bad = app
        .get("/optional")
        .header(AUTHORIZATION, "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
}
