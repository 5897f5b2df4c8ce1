//! The seed flow through the gateway only: signup, login, profile creation, and the
//! `user.created` event on JetStream; every call's `X-Request-Id` comes back.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tessera_e2e::{Options, Platform};

/// Sends `request` with a fresh request id and checks the gateway answered with it.
async fn send(request: RequestBuilder, what: &str) -> Response {
    let id = format!("e2e-{what}-{}", uuid::Uuid::new_v4().simple());
    let response = request
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some(id.as_str()),
        "{what}: the request id is echoed"
    );
    response
}

async fn json_of(response: Response, expected: StatusCode, what: &str) -> Value {
    let status = response.status();
    let body = response.text().await.expect("a body");
    assert_eq!(status, expected, "{what}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"))
}

/// The first event on `subscription` whose `data.<member>` is `value` (other tests
/// publish theirs on the same subjects).
async fn next_event(
    subscription: &mut tessera_events::async_nats::Subscriber,
    member: &str,
    value: &str,
    platform: &Platform,
) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
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
            "no event with {member} = {value} within 30 s\n{}",
            platform.log_tails()
        )
    })
}

/// Discovery through the gateway names the gateway (the issuer), and its JWKS is
/// reachable there too, so standard OIDC clients work against the one public URL.
async fn check_discovery(http: &reqwest::Client, platform: &Platform) {
    let gw = platform.gateway();
    let discovery = json_of(
        send(
            http.get(format!("{gw}/.well-known/openid-configuration")),
            "discovery",
        )
        .await,
        StatusCode::OK,
        "discovery",
    )
    .await;
    assert_eq!(discovery["issuer"], gw);
    let jwks_uri = discovery["jwks_uri"].as_str().expect("a jwks_uri");
    assert!(jwks_uri.starts_with(gw), "{jwks_uri} is under the gateway");
    let jwks = json_of(
        send(http.get(jwks_uri), "jwks").await,
        StatusCode::OK,
        "jwks",
    )
    .await;
    assert!(
        jwks["keys"].as_array().is_some_and(|keys| keys
            .iter()
            .any(|k| k["kid"] == platform.active_kid().as_str())),
        "the JWKS publishes the keyset's active key: {jwks}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_up_logs_in_and_creates_a_profile_through_the_gateway_and_user_created_is_published()
 {
    let nats_url = std::env::var("TESSERA_TEST_NATS_URL").expect("TESSERA_TEST_NATS_URL");
    let nats = tessera_events::async_nats::connect(nats_url.as_str())
        .await
        .expect("connect to NATS");
    // Other runs share the stream: the event is recognised by this test's user id.
    let mut created = nats
        .subscribe("tessera.events.profile.user.created")
        .await
        .expect("subscribe");
    let mut registered = nats
        .subscribe("tessera.events.identity.user.registered")
        .await
        .expect("subscribe");

    let platform = Platform::start(Options::default()).await;
    let gw = platform.gateway();
    let http = reqwest::Client::new();
    check_discovery(&http, &platform).await;

    let email = format!("ada-{}@example.com", uuid::Uuid::new_v4().simple());
    let credentials = json!({ "email": email, "password": "a long enough e2e passphrase 42" });

    let user = json_of(
        send(
            http.post(format!("{gw}/v1/signup")).json(&credentials),
            "signup",
        )
        .await,
        StatusCode::CREATED,
        "signup",
    )
    .await;
    let user_id = user["id"].as_str().expect("a user id").to_owned();

    let tokens = json_of(
        send(
            http.post(format!("{gw}/v1/login")).json(&credentials),
            "login",
        )
        .await,
        StatusCode::OK,
        "login",
    )
    .await;
    let token = tokens["access_token"].as_str().expect("an access token");
    assert!(
        tokens["refresh_token"].is_string(),
        "login gives a refresh token"
    );

    let me = json_of(
        send(http.get(format!("{gw}/v1/me")).bearer_auth(token), "me").await,
        StatusCode::OK,
        "me",
    )
    .await;
    assert_eq!(me["id"], user_id.as_str());
    assert_eq!(me["email"], email.as_str());

    // The gateway itself refuses the profile route without a token.
    let anonymous = send(
        http.get(format!("{gw}/profile/v1/profiles/me")),
        "anonymous",
    )
    .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let profile = json_of(
        send(
            http.post(format!("{gw}/profile/v1/profiles"))
                .bearer_auth(token)
                .json(
                    &json!({ "email": email, "display_name": "Ada Lovelace", "locale": "de-CH" }),
                ),
            "create-profile",
        )
        .await,
        StatusCode::CREATED,
        "create profile",
    )
    .await;
    assert_eq!(profile["user_id"], user_id.as_str());
    assert_eq!(profile["locale"], "de-CH");

    let mine = json_of(
        send(
            http.get(format!("{gw}/profile/v1/profiles/me"))
                .bearer_auth(token),
            "my-profile",
        )
        .await,
        StatusCode::OK,
        "read my profile",
    )
    .await;
    assert_eq!(mine["display_name"], "Ada Lovelace");

    // Identity relays its outbox too (the operator gives it the NATS URL).
    let signed_up = next_event(&mut registered, "user_id", &user_id, &platform).await;
    assert_eq!(signed_up["type"], "dev.tessera.identity.user.registered.v1");
    assert_eq!(signed_up["data"]["email"], email.as_str());

    let event = next_event(&mut created, "user_id", &user_id, &platform).await;
    assert_eq!(event["type"], "dev.tessera.profile.user.created.v1");
    assert_eq!(event["data"]["email"], email.as_str());
    assert_eq!(event["data"]["locale"], "de-CH");
    assert_eq!(event["data"]["display_name"], "Ada Lovelace");
}
