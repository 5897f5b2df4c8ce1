//! Logging started as the operator starts it, behind the gateway's admin-only
//! `/logging/` route.

use reqwest::StatusCode;
use tessera_e2e::{Client, Options, Platform, Service, unique_email};

/// Signs `email` up and logs in, from its own client address (the gateway limits
/// logins per address): its access token.
async fn login(gw: &str, n: u16, email: &str) -> String {
    let client = Client::from_address(gw, Client::nth_address(n));
    client
        .signup(email)
        .await
        .unwrap_or_else(|f| panic!("signup {email}: {f}"));
    let (_, tokens) = client
        .login(email)
        .await
        .unwrap_or_else(|f| panic!("login {email}: {f}"));
    tokens.access
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_runs_with_the_operators_settings_and_only_admins_reach_it_through_the_gateway() {
    let admin = unique_email("admin");
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

    let user = login(gw, 0, &unique_email("user")).await;
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

    let admin = login(gw, 1, &admin).await;
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
