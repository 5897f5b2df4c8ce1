//! The seed flow through the gateway only (DESIGN.md §1): signup, login, profile
//! creation, `user.created` on JetStream, the welcome email (and SMS) in the profile's
//! locale, the requests' log records in logging by request id, and the audit trail.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_e2e::{Answer, Client, Options, Platform, Service, token_claims, unique_email};

/// How long each step of the asynchronous part may take on a busy 2-core machine.
const WITHIN: Duration = Duration::from_secs(60);
/// How often checks that go through the gateway to logging poll.
const POLL: Duration = Duration::from_millis(250);

/// The first event on `subscription` whose `data.<member>` is `value`.
async fn next_event(
    subscription: &mut tessera_events::async_nats::Subscriber,
    member: &str,
    value: &str,
    platform: &Platform,
) -> Value {
    tokio::time::timeout(WITHIN, async {
        loop {
            let message = subscription.next().await.expect("subscription open");
            let event: Value = serde_json::from_slice(&message.payload).expect("a JSON event");
            if event["data"][member] == value {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no event with {member} = {value} within {WITHIN:?}\n{}",
            platform.log_tails()
        )
    })
}

/// Discovery through the gateway names the gateway (the issuer), and its JWKS is
/// reachable there too, so standard OIDC clients work against the one public URL.
async fn check_discovery(client: &Client, platform: &Platform) {
    let gw = platform.gateway();
    let discovery = client
        .call(
            client
                .http()
                .get(client.url("/.well-known/openid-configuration")),
            "discovery",
            StatusCode::OK,
        )
        .await
        .expect("discovery")
        .body;
    assert_eq!(discovery["issuer"], gw);
    let jwks_uri = discovery["jwks_uri"].as_str().expect("a jwks_uri");
    assert!(jwks_uri.starts_with(gw), "{jwks_uri} is under the gateway");
    let jwks = client
        .call(client.http().get(jwks_uri), "jwks", StatusCode::OK)
        .await
        .expect("jwks")
        .body;
    assert!(
        jwks["keys"].as_array().is_some_and(|keys| keys
            .iter()
            .any(|k| k["kid"] == platform.active_kid().as_str())),
        "the JWKS publishes the keyset's active key: {jwks}"
    );
}

/// The welcome email and SMS, in French, exactly once each.
async fn check_welcome(platform: &Platform, email: &str, phone: &str) {
    let mail = testkit::eventually(WITHIN, "the welcome email", || async {
        platform.smtp().messages_to(email).into_iter().next()
    })
    .await;
    assert_eq!(
        mail.header("subject"),
        "Bienvenue sur Tessera, Ada",
        "the French welcome template"
    );
    assert!(
        mail.body().contains("Bonjour Ada,") && mail.body().contains("Votre profil est prêt"),
        "the French body: {}",
        mail.body()
    );
    assert!(mail.header("from").contains("no-reply@tessera.test"));
    let sms = testkit::eventually(WITHIN, "the welcome SMS", || async {
        platform
            .recorder()
            .requests()
            .into_iter()
            .find(|r| r.channel == "sms" && r.body["to"] == phone)
    })
    .await;
    assert!(
        sms.body["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("Bienvenue sur Tessera, Ada")),
        "the French SMS: {}",
        sms.body
    );
}

/// Each request's records are in logging under its request id, from the gateway and
/// the service behind it, joined by one trace id (the gateway propagates the trace).
async fn check_logs(client: &Client, admin: &str, requests: &[(&Answer, Service)]) {
    for (answer, upstream) in requests {
        let id = &answer.request_id;
        // Every poll is a gateway request and a logging query: every 250 ms, not 20 ms,
        // so the test does not add load (and gateway records) of its own while it waits.
        testkit::eventually_every(POLL, WITHIN, &format!("records of {id}"), || async {
            let records = client.log_records(admin, id).await.ok()?;
            let trace = |service: Service| {
                records
                    .iter()
                    .find(|r| r["service"] == service.name() && r["request_id"] == id.as_str())
                    .map(|r| r["trace_id"].clone())
            };
            let (gateway, behind) = (trace(Service::Gateway)?, trace(*upstream)?);
            assert!(
                gateway.is_string() && gateway == behind,
                "{id}: one trace id across the gateway and {}: {records:?}",
                upstream.name()
            );
            Some(())
        })
        .await;
    }
}

/// The audit records about `subject`, once their types include every one of `wanted`.
async fn audit_records(client: &Client, admin: &str, subject: &str, wanted: &[&str]) -> Vec<Value> {
    let path = format!("/logging/v1/audit/records?subject={subject}&limit=100");
    testkit::eventually_every(
        POLL,
        WITHIN,
        &format!("audit records {wanted:?} of {subject}"),
        || async {
            let answer = client.get(&path, admin).await.ok()?;
            let records = answer.body["records"].as_array()?.clone();
            wanted
                .iter()
                .all(|t| records.iter().any(|r| r["type"] == *t))
                .then_some(records)
        },
    )
    .await
}

/// The user's signup and login (naming the access token it issued), and the token issued
/// to notification (its client-credentials token, with which it read the profile for the
/// welcome email), are in the audit chain, and the chain verifies.
async fn check_audit(client: &Client, admin: &str, user_id: &str, access_token: &str) {
    const LOGIN: &str = "dev.tessera.identity.audit.login_succeeded.v1";
    let records = audit_records(
        client,
        admin,
        user_id,
        &["dev.tessera.identity.audit.signup.v1", LOGIN],
    )
    .await;
    let login = records.iter().find(|r| r["type"] == LOGIN).expect("login");
    let data: Value =
        serde_json::from_str(login["data"].as_str().expect("data as stored")).expect("JSON data");
    let claims = token_claims(access_token).expect("a JWT");
    assert_eq!(
        data["details"]["jti"], claims["jti"],
        "the login's audit record names the token it issued: {data}"
    );
    audit_records(
        client,
        admin,
        Service::Notification.name(),
        &["dev.tessera.identity.audit.token_issued.v1"],
    )
    .await;
    let verify = client
        .get("/logging/v1/audit/verify", admin)
        .await
        .expect("verify the audit chain")
        .body;
    assert_eq!(verify["valid"], true, "{verify}");
    assert!(
        verify["records"].as_u64().unwrap_or_default() >= 3,
        "{verify}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_up_logs_in_creates_a_profile_and_gets_the_welcome_email_in_french_with_logs_and_audit()
 {
    let admin_email = unique_email("admin");
    let platform = Platform::start(Options {
        logging: true,
        notification: true,
        bootstrap_admins: vec![admin_email.clone()],
        ..Options::default()
    })
    .await;
    let nats = tessera_events::async_nats::connect(platform.nats_url())
        .await
        .expect("connect to the platform's NATS");
    let mut created = nats
        .subscribe("tessera.events.profile.user.created")
        .await
        .expect("subscribe");
    let mut registered = nats
        .subscribe("tessera.events.identity.user.registered")
        .await
        .expect("subscribe");
    let client = Client::new(platform.gateway());
    check_discovery(&client, &platform).await;

    let email = unique_email("ada");
    let signup = client.signup(&email).await.expect("signup");
    let user_id = signup.body["id"].as_str().expect("a user id").to_owned();
    let (login, tokens) = client.login(&email).await.expect("login");
    let me = client.get("/v1/me", &tokens.access).await.expect("me").body;
    assert_eq!(me["id"], user_id.as_str());
    assert_eq!(me["email"], email.as_str());

    // The gateway itself refuses the profile route without a token.
    let anonymous = client
        .call(
            client.http().get(client.url("/profile/v1/profiles/me")),
            "anonymous",
            StatusCode::UNAUTHORIZED,
        )
        .await;
    assert!(anonymous.is_ok(), "{anonymous:?}");

    let phone = "+33612345678";
    let profile = json!({
        "email": email, "display_name": "Ada", "locale": "fr", "phone": phone,
        "preferences": { "email": true, "sms": true, "push": false },
    });
    let created_profile = client
        .create_profile(&tokens.access, &profile)
        .await
        .expect("create the profile");
    assert_eq!(created_profile.body["user_id"], user_id.as_str());
    assert_eq!(created_profile.body["locale"], "fr");
    let mine = client
        .get("/profile/v1/profiles/me", &tokens.access)
        .await
        .expect("read my profile")
        .body;
    assert_eq!(mine["display_name"], "Ada");

    let signed_up = next_event(&mut registered, "user_id", &user_id, &platform).await;
    assert_eq!(signed_up["type"], "dev.tessera.identity.user.registered.v1");
    assert_eq!(signed_up["data"]["email"], email.as_str());
    let event = next_event(&mut created, "user_id", &user_id, &platform).await;
    assert_eq!(event["type"], "dev.tessera.profile.user.created.v1");
    assert_eq!(event["data"]["email"], email.as_str());
    assert_eq!(event["data"]["locale"], "fr");

    check_welcome(&platform, &email, phone).await;

    client.signup(&admin_email).await.expect("admin signup");
    let (_, admin) = client.login(&admin_email).await.expect("admin login");
    check_logs(
        &client,
        &admin.access,
        &[
            (&signup, Service::Identity),
            (&login, Service::Identity),
            (&created_profile, Service::Profile),
        ],
    )
    .await;
    check_audit(&client, &admin.access, &user_id, &tokens.access).await;

    // Once notification is quiet (no event pending, every delivery received): one of each.
    platform.wait_notification_settled(WITHIN).await;
    assert_eq!(
        platform.smtp().messages_to(&email).len(),
        1,
        "one welcome email"
    );
    let sms = platform.recorder().requests();
    assert_eq!(
        sms.iter().filter(|r| r.body["to"] == phone).count(),
        1,
        "one welcome SMS: {sms:?}"
    );
}
