//! Roles and the admin API: bootstrap admins, the CLI grant, users and clients.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backend, Options, PASSWORD, TestIdentity, claims};

async fn admin_app() -> (TestIdentity, String) {
    let app = TestIdentity::start(Options {
        args: &["--bootstrap-admins", "root@example.com"],
        ..Options::default()
    })
    .await;
    let tokens = app.user_tokens("root@example.com").await;
    (app, tokens["access_token"].as_str().expect("at").to_owned())
}

#[tokio::test]
async fn a_bootstrap_admin_manages_users_and_a_plain_user_cannot() {
    let (app, admin) = admin_app().await;
    assert_eq!(claims(&admin)["roles"], json!(["user", "admin"]));
    let user = app.user_tokens("pat@example.com").await;
    let user_token = user["access_token"].as_str().expect("at");

    let forbidden = app
        .http
        .get(app.url("/v1/admin/users"))
        .bearer_auth(user_token)
        .send()
        .await
        .expect("send");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let users = app.get_json("/v1/admin/users", Some(&admin)).await;
    let users = users.as_array().expect("a list of users");
    assert_eq!(users.len(), 2);
    let pat_id = users
        .iter()
        .find(|u| u["email"] == "pat@example.com")
        .expect("pat")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let disabled = app
        .http
        .post(app.url(&format!("/v1/admin/users/{pat_id}/disable")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(disabled.status(), StatusCode::NO_CONTENT);
    let login = app
        .post_json(
            "/v1/login",
            &json!({ "email": "pat@example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.refresh(user["refresh_token"].as_str().expect("rt"))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert!(
        app.outbox()
            .await
            .iter()
            .any(|(s, _)| s == "tessera.audit.identity.user_disabled")
    );
}

#[tokio::test]
async fn an_admin_creates_a_client_that_can_then_get_tokens_until_disabled() {
    let (app, admin) = admin_app().await;
    let created = app
        .http
        .post(app.url("/v1/admin/clients"))
        .bearer_auth(&admin)
        .json(&json!({ "client_id": "reports", "roles": ["service"] }))
        .send()
        .await
        .expect("send");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let secret = created["client_secret"]
        .as_str()
        .expect("secret shown once");
    assert_eq!(
        app.client_token("reports", secret).await.status(),
        StatusCode::OK
    );

    let listed = app.get_json("/v1/admin/clients", Some(&admin)).await;
    let listed = listed.as_array().expect("a list of clients");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("client_secret").is_none() && listed[0].get("secret_hash").is_none());

    let again = app
        .http
        .post(app.url("/v1/admin/clients"))
        .bearer_auth(&admin)
        .json(&json!({ "client_id": "reports" }))
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let disable = app
        .http
        .post(app.url("/v1/admin/clients/reports/disable"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(disable.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.client_token("reports", secret).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_cli_grants_admin_to_an_existing_user() {
    let app = TestIdentity::on(Backend::Sqlite).await;
    assert_eq!(
        app.signup("quin@example.com").await.status(),
        StatusCode::CREATED
    );
    let db = app.dir.path().join("identity.db");
    let args = [
        "tessera-identity",
        "--issuer",
        "http://issuer.test",
        "--database-url",
        &format!("sqlite:{}", db.display()),
    ];
    let config = <tessera_identity::config::Cli as clap::Parser>::try_parse_from(args)
        .expect("config")
        .config;
    let message = tessera_identity::grant_admin(&config, "Quin@example.com")
        .await
        .expect("granted");
    assert_eq!(message, "granted admin to quin@example.com");
    assert!(
        tessera_identity::grant_admin(&config, "nobody@example.com")
            .await
            .is_err()
    );
    let tokens = app.login("quin@example.com", PASSWORD).await;
    assert_eq!(
        claims(tokens["access_token"].as_str().expect("at"))["roles"],
        json!(["user", "admin"])
    );
}
