//! The OAuth endpoints: client credentials, revocation, introspection, discovery.

use http::StatusCode;
use serde_json::Value;

use crate::support::{Backend, PEPPER, TestIdentity, claims, on_both_backends, registry};

const SECRET: &str = "tsc_a-very-long-random-client-secret-value";

async fn with_registry(backend: Backend) -> TestIdentity {
    TestIdentity::with_billing_client(backend, &[], SECRET).await
}

async fn oauth_error(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

on_both_backends! {
    async fn a_registered_client_gets_a_service_token_with_basic_or_form_credentials(backend: Backend) {
        let app = with_registry(backend).await;
        let response = app.client_token("billing", SECRET).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.expect("json");
        assert!(body.get("refresh_token").is_none());
        let claims = claims(body["access_token"].as_str().expect("token"));
        assert_eq!((claims["sub"].as_str(), claims["client_id"].as_str()), (Some("billing"), Some("billing")));
        assert_eq!(claims["roles"], serde_json::json!(["service"]));

        let form = app
            .http
            .post(app.url("/oauth2/token"))
            .form(&[("grant_type", "client_credentials"), ("client_id", "billing"), ("client_secret", SECRET)])
            .send()
            .await
            .expect("send");
        assert_eq!(form.status(), StatusCode::OK);
        let issued = app.outbox().await.into_iter().filter(|(s, _)| s == "tessera.audit.identity.token_issued").count();
        assert_eq!(issued, 2, "one audit record per issued token");
    }

    async fn wrong_or_doubled_client_credentials_are_refused_the_oauth_way(backend: Backend) {
        let app = with_registry(backend).await;
        let wrong = app.client_token("billing", "tsc_guess").await;
        assert_eq!(wrong.headers()["www-authenticate"], "Basic realm=\"tessera\"");
        assert_eq!(oauth_error(wrong).await, (StatusCode::UNAUTHORIZED, "invalid_client".into()));
        assert_eq!(oauth_error(app.client_token("nobody", SECRET).await).await.1, "invalid_client");
        let doubled = app
            .http
            .post(app.url("/oauth2/token"))
            .basic_auth("billing", Some(SECRET))
            .form(&[("grant_type", "client_credentials"), ("client_id", "billing"), ("client_secret", SECRET)])
            .send()
            .await
            .expect("send");
        assert_eq!(oauth_error(doubled).await, (StatusCode::BAD_REQUEST, "invalid_request".into()));
        let unknown_grant = app.http.post(app.url("/oauth2/token")).form(&[("grant_type", "password")]).send().await.expect("send");
        assert_eq!(oauth_error(unknown_grant).await.1, "unsupported_grant_type");
        let json_body = app.http.post(app.url("/oauth2/token")).json(&serde_json::json!({"grant_type": "client_credentials"})).send().await.expect("send");
        assert_eq!(oauth_error(json_body).await, (StatusCode::BAD_REQUEST, "invalid_request".into()));
    }

    async fn introspection_answers_authenticated_clients_only(backend: Backend) {
        let app = with_registry(backend).await;
        let user = app.user_tokens("ivy@example.com").await;
        let access = user["access_token"].as_str().expect("at");
        let anonymous = app.http.post(app.url("/oauth2/introspect")).form(&[("token", access)]).send().await.expect("send");
        assert_eq!(oauth_error(anonymous).await, (StatusCode::UNAUTHORIZED, "invalid_client".into()));

        let introspect = |token: String| {
            app.http.post(app.url("/oauth2/introspect")).basic_auth("billing", Some(SECRET)).form(&[("token", token)]).send()
        };
        let active: Value = introspect(access.to_owned()).await.expect("send").json().await.expect("json");
        assert_eq!(active["active"], true);
        assert_eq!(active["sub"], claims(access)["sub"]);
        let tampered = format!("{}x", &access[..access.len() - 1]);
        for token in ["garbage".to_owned(), tampered] {
            let inactive: Value = introspect(token).await.expect("send").json().await.expect("json");
            assert_eq!(inactive, serde_json::json!({ "active": false }));
        }
    }

    async fn revoking_a_refresh_token_ends_its_family_and_unknown_tokens_get_200(backend: Backend) {
        let app = TestIdentity::on(backend).await;
        let refresh = app.user_tokens("jo@example.com").await["refresh_token"].as_str().expect("rt").to_owned();
        for token in [refresh.as_str(), "tsr_unknown", "not-a-token"] {
            let response = app.http.post(app.url("/oauth2/revoke")).form(&[("token", token)]).send().await.expect("send");
            assert_eq!(response.status(), StatusCode::OK, "{token}");
        }
        assert_eq!(oauth_error(app.refresh(&refresh).await).await.1, "invalid_grant");
    }
}

#[tokio::test]
async fn discovery_points_at_the_standard_endpoints_and_jwks_is_cacheable() {
    let app = TestIdentity::on(Backend::Sqlite).await;
    let config = app
        .get_json("/.well-known/openid-configuration", None)
        .await;
    assert_eq!(config["issuer"], crate::support::ISSUER);
    assert_eq!(
        config["jwks_uri"],
        format!("{}/.well-known/jwks.json", crate::support::ISSUER)
    );
    assert_eq!(
        config["token_endpoint"],
        format!("{}/oauth2/token", crate::support::ISSUER)
    );
    let jwks = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("send");
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = jwks.json().await.expect("json");
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("EdDSA"))
    );
    assert!(key.get("d").is_none(), "private key material published");
}

#[tokio::test]
async fn the_client_registry_is_reloaded_when_the_operator_rewrites_it_and_a_broken_file_is_ignored()
 {
    let app = with_registry(Backend::Sqlite).await;
    let path = app.dir.path().join("clients.json");
    let rotated = "tsc_the-rotated-secret-of-the-billing-client";
    std::fs::write(&path, registry(&PEPPER, "billing", rotated, &["service"])).expect("write");
    // Each check is a token request that hashes the secret: polled every 250 ms (not
    // 20 ms) with room for a loaded machine.
    testkit::eventually_every(
        std::time::Duration::from_millis(250),
        std::time::Duration::from_secs(30),
        "the new secret to work",
        || async {
            (app.client_token("billing", rotated).await.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
    assert_eq!(
        app.client_token("billing", SECRET).await.status(),
        StatusCode::UNAUTHORIZED
    );

    std::fs::write(&path, "{ broken").expect("write");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        app.client_token("billing", rotated).await.status(),
        StatusCode::OK,
        "a broken file must not drop the clients"
    );
}

#[tokio::test]
async fn concurrent_token_requests_each_leave_exactly_one_audit_record() {
    let app = with_registry(Backend::Postgres).await;
    let requests = (0..60).map(|_| app.client_token("billing", SECRET));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(requests)
        .await
        .iter()
        .map(reqwest::Response::status)
        .collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let outbox = app.outbox().await;
    let records: Vec<&Value> = outbox
        .iter()
        .filter(|(s, _)| s == "tessera.audit.identity.token_issued")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        records.len(),
        60,
        "group commit must write every record once"
    );
    let ids: std::collections::HashSet<&str> =
        records.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 60);
}
