//! Signing keys: standalone rotation under a controlled clock, and the operator's mounted
//! keyset file.

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use service_kit::ManualClock;
use tessera_keys::{Algorithm, Key, KeyState, Keyset, generate};
use time::OffsetDateTime;

use crate::support::{Options, PASSWORD, TestIdentity, header, on_both_backends};

async fn jwks_kids(app: &TestIdentity) -> Vec<String> {
    let jwks = app.get_json("/.well-known/jwks.json", None).await;
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

async fn signing_kid(app: &TestIdentity, email: &str) -> (String, String) {
    let tokens = app.login(email, PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("at").to_owned();
    (
        header(&access)["kid"].as_str().expect("kid").to_owned(),
        access,
    )
}

async fn wait_for_kids(
    app: &TestIdentity,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    testkit::eventually(Duration::from_secs(30), what, || async {
        let kids = jwks_kids(app).await;
        check(&kids).then_some(kids)
    })
    .await
}

on_both_backends! {
    async fn standalone_rotation_publishes_the_next_key_before_use_and_keeps_the_old_one_until_its_tokens_expire(backend: Backend) {
        let clock = ManualClock::new(OffsetDateTime::now_utc());
        // Policy: interval 1 h; pre-publication = JWKS cache 10 s + propagation 5 s = 15 s;
        // retirement = token lifetime 60 s + cache 10 s + propagation 5 s + leeway 5 s = 80 s.
        let args = ["--access-token-ttl-secs", "60", "--jwks-max-age-secs", "10", "--key-propagation-secs", "5",
                    "--clock-leeway-secs", "5", "--key-rotation-interval-secs", "3600"];
        let app = TestIdentity::start(Options { backend, args: &args, clock: Some(clock.clone()), ..Options::default() }).await;
        assert_eq!(app.signup("rot@example.com").await.status(), StatusCode::CREATED);
        let first = jwks_kids(&app).await;
        assert_eq!(first.len(), 1);
        let k1 = first[0].clone();
        assert_eq!(signing_kid(&app, "rot@example.com").await.0, k1);

        // 15 s before the interval ends, the next key is published but not used.
        clock.advance(Duration::from_secs(3600 - 15));
        let both = wait_for_kids(&app, "the next key in the JWKS", |kids| kids.len() == 2).await;
        let k2 = both.iter().find(|k| **k != k1).expect("a new kid").clone();
        let (kid, last_k1_token) = signing_kid(&app, "rot@example.com").await;
        assert_eq!(kid, k1, "a key must not sign before it has been published for the pre-publication time");

        // At the interval, the published key takes over; the old one stays published.
        clock.advance(Duration::from_secs(15));
        // Each check is a login (a password hash): polled every 250 ms, not 20.
        testkit::eventually_every(Duration::from_millis(250), Duration::from_secs(30), "the next key to sign", || async {
            (signing_kid(&app, "rot@example.com").await.0 == k2).then_some(())
        }).await;
        assert!(jwks_kids(&app).await.contains(&k1), "the retiring key left the JWKS too early");
        assert_eq!(app.me(&last_k1_token).await.status(), StatusCode::OK, "a token of the retiring key must still verify");
        let debug: Value = app.http.get(format!("{}/debug/keys", app.admin)).send().await.expect("send").json().await.expect("json");
        let states: Vec<(&str, &str)> = debug["keys"].as_array().expect("keys").iter()
            .map(|k| (k["kid"].as_str().expect("kid"), k["state"].as_str().expect("state"))).collect();
        assert!(states.contains(&(k1.as_str(), "retiring")) && states.contains(&(k2.as_str(), "active")), "{states:?}");
        assert!(!debug.to_string().contains("PRIVATE"), "private material on /debug/keys");
        assert!(debug["keys"][0]["thumbprint"].as_str().is_some_and(|t| t.len() == 43));

        // Once every token it signed has expired (plus cache and leeway), it is removed.
        clock.advance(Duration::from_secs(81));
        wait_for_kids(&app, "the retired key to leave the JWKS", |kids| kids == [k2.clone()]).await;
        let audit = app.outbox().await;
        let key_changes = audit.iter().filter(|(s, _)| s == "tessera.audit.identity.key_state_changed").count();
        assert!(key_changes >= 4, "created, published, activated, retired, removed: {key_changes}");
    }
}

fn active_key(alg: Algorithm, now: OffsetDateTime) -> Key {
    generate(alg)
        .expect("generate")
        .into_key(KeyState::Active, now)
}

#[tokio::test]
async fn a_mounted_keyset_is_used_and_swapped_when_the_file_changes_and_a_bad_file_is_ignored() {
    let now = OffsetDateTime::now_utc();
    let k1 = active_key(Algorithm::ES256, now);
    let first = Keyset {
        version: 1,
        keys: vec![k1.clone()],
    };
    let app = TestIdentity::start(Options {
        args: &[
            "--keyset-dir",
            "{dir}",
            "--client-secret-pepper",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ],
        files: vec![(
            "keyset.json",
            String::from_utf8(first.to_json()).expect("utf-8"),
        )],
        ..Options::default()
    })
    .await;
    assert_eq!(
        app.signup("mo@example.com").await.status(),
        StatusCode::CREATED
    );
    let (kid, token) = signing_kid(&app, "mo@example.com").await;
    assert_eq!(
        (kid.as_str(), header(&token)["alg"].as_str()),
        (k1.kid.as_str(), Some("ES256"))
    );

    // The operator rotates: k2 active, k1 retiring — written as Kubernetes does, by replacing the file.
    let mut retiring = k1.clone();
    retiring.state = KeyState::Retiring;
    retiring.retiring_at = Some(now);
    retiring.remove_after = Some(now + Duration::from_secs(3600));
    let k2 = active_key(Algorithm::ES256, now);
    let second = Keyset {
        version: 1,
        keys: vec![retiring, k2.clone()],
    };
    let path = app.dir.path().join("keyset.json");
    let staged = app.dir.path().join("keyset.json.new");
    std::fs::write(&staged, second.to_json()).expect("write");
    std::fs::rename(&staged, &path).expect("swap");
    // The keyset is polled every 2 s; 30 s of room for a loaded machine, and each check
    // is a login (a password hash), so every 250 ms.
    testkit::eventually_every(
        Duration::from_millis(250),
        Duration::from_secs(30),
        "the new active key to sign",
        || async { (signing_kid(&app, "mo@example.com").await.0 == k2.kid).then_some(()) },
    )
    .await;
    assert_eq!(
        app.me(&token).await.status(),
        StatusCode::OK,
        "tokens of the retiring key still verify"
    );

    // A broken file is refused; the keys in use stay.
    std::fs::write(&path, b"{ not json").expect("write");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(signing_kid(&app, "mo@example.com").await.0, k2.kid);
    assert_eq!(jwks_kids(&app).await.len(), 2);
    let ready = app
        .http
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), StatusCode::OK);
}
