//! Logging started as the operator starts it, behind the gateway's admin-only
//! `/logging/` route.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_e2e::{Options, Platform, Service};

async fn login(http: &reqwest::Client, gw: &str, email: &str) -> String {
    let credentials = json!({ "email": email, "password": "a long enough e2e passphrase 42" });
    let signup = http
        .post(format!("{gw}/v1/signup"))
        .json(&credentials)
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), StatusCode::CREATED, "signup {email}");
    let login = http
        .post(format!("{gw}/v1/login"))
        .json(&credentials)
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK, "login {email}");
    let tokens: Value = login.json().await.expect("JSON tokens");
    tokens["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_runs_with_the_operators_settings_and_only_admins_reach_it_through_the_gateway() {
    let admin = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    let platform = Platform::start(Options {
        logging: true,
        bootstrap_admins: vec![admin.clone()],
        ..Options::default()
    })
    .await;
    assert!(
        platform.runs(Service::Logging),
        "tessera-logging is built (`just e2e` builds it)"
    );
    let gw = platform.gateway();
    let http = reqwest::Client::new();
    let url = format!("{gw}/logging/v1/audit/verify");

    let anonymous = http.get(&url).send().await.expect("anonymous");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let user = login(
        &http,
        gw,
        &format!("user-{}@example.com", uuid::Uuid::new_v4().simple()),
    )
    .await;
    let refused = http
        .get(&url)
        .bearer_auth(&user)
        .send()
        .await
        .expect("user");
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "a user without the admin role"
    );

    let admin = login(&http, gw, &admin).await;
    let verified = http
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("admin");
    let status = verified.status();
    let body = verified.text().await.unwrap_or_default();
    assert_eq!(
        status,
        StatusCode::OK,
        "the admin verifies the audit chain: {body}"
    );
    let records = http
        .get(format!("{gw}/logging/v1/records"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("records");
    assert_eq!(
        records.status(),
        StatusCode::OK,
        "the admin queries records"
    );
}
