//! Honest tokens pass with every supported algorithm, and the JWKS cache behaves: refetch
//! on an unknown kid (single-flight, rate-limited), readiness, background refresh.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tessera_auth::{HttpJwks, KeySourceError, StaticJwks, Verifier, VerifyError};
use tessera_keys::Algorithm;
use tokio_util::sync::CancellationToken;

use crate::support::{JwksServer, TestKey, claims, claims_with, config, jwks};

async fn accepts_tokens_signed_with(alg: Algorithm) {
    let key = TestKey::generate(alg);
    let server = JwksServer::start(&[&key]).await;
    let verifier = server.loaded_verifier().await;
    let principal = verifier
        .verify(&key.sign(&claims_with("client_id", json!("svc-profile"))))
        .await
        .unwrap();
    assert_eq!(principal.subject, "u-1");
    assert_eq!(principal.token_id, "tok-1");
    assert_eq!(principal.roles, ["user"]);
    assert_eq!(principal.client_id.as_deref(), Some("svc-profile"));
    assert!(principal.is_service());
    assert_eq!(principal.expires_at, principal.claims.exp);
}

#[tokio::test]
async fn an_eddsa_token_from_identity_is_accepted() {
    accepts_tokens_signed_with(Algorithm::EdDSA).await;
}

#[tokio::test]
async fn an_es256_token_from_identity_is_accepted() {
    accepts_tokens_signed_with(Algorithm::ES256).await;
}

#[tokio::test]
async fn an_rs256_token_from_identity_is_accepted() {
    accepts_tokens_signed_with(Algorithm::RS256).await;
}

#[tokio::test]
async fn a_key_published_after_the_last_load_is_picked_up_by_one_refetch() {
    let old = TestKey::generate(Algorithm::EdDSA);
    let server = JwksServer::start(&[&old]).await;
    let verifier = server.loaded_verifier().await;
    let new = TestKey::generate(Algorithm::EdDSA);
    server.publish(&[&old, &new]);
    assert!(verifier.verify(&new.sign(&claims())).await.is_ok());
    assert_eq!(server.requests(), 2);
    // Now cached: no further fetch.
    assert!(verifier.verify(&new.sign(&claims())).await.is_ok());
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn many_concurrent_verifies_with_an_unknown_kid_share_one_fetch() {
    concurrent_unknown_kid_verifies_fetch_once(tessera_auth::DEFAULT_MIN_REFETCH_INTERVAL).await;
}

#[tokio::test]
async fn concurrent_verifies_share_one_fetch_even_without_a_rate_limit() {
    // Waiters must notice that the fetch they queued behind already replaced the keys.
    concurrent_unknown_kid_verifies_fetch_once(Duration::ZERO).await;
}

async fn concurrent_unknown_kid_verifies_fetch_once(min_refetch_interval: Duration) {
    let old = TestKey::generate(Algorithm::EdDSA);
    let server = JwksServer::start(&[&old]).await;
    let mut config = config();
    config.min_refetch_interval = min_refetch_interval;
    let verifier = server.verifier_with(config);
    verifier.refresh().await.unwrap();
    let new = TestKey::generate(Algorithm::EdDSA);
    server.publish(&[&old, &new]);
    server.delay(Duration::from_millis(200));
    let token = Arc::new(new.sign(&claims()));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (verifier, token) = (Arc::clone(&verifier), Arc::clone(&token));
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(
        server.requests(),
        2,
        "initial load plus exactly one refetch"
    );
}

#[tokio::test]
async fn refetches_for_unknown_kids_are_rate_limited() {
    let key = TestKey::generate(Algorithm::EdDSA);
    let server = JwksServer::start(&[&key]).await;
    let mut config = config();
    // 2 s: the five lookups below (one of them an HTTP refetch) fit in it on a loaded
    // machine too.
    config.min_refetch_interval = Duration::from_secs(2);
    let verifier = server.verifier_with(config);
    verifier.refresh().await.unwrap();
    let stranger = TestKey::generate(Algorithm::EdDSA);
    for _ in 0..5 {
        assert_eq!(
            verifier.verify(&stranger.sign(&claims())).await,
            Err(VerifyError::UnknownKey)
        );
    }
    assert_eq!(
        server.requests(),
        2,
        "one refetch for five unknown-kid tokens"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let _ = verifier.verify(&stranger.sign(&claims())).await;
    assert_eq!(
        server.requests(),
        3,
        "a refetch is allowed again after the interval"
    );
}

#[tokio::test]
async fn before_the_first_load_the_verifier_is_not_ready_and_reports_keys_unavailable() {
    let key = TestKey::generate(Algorithm::EdDSA);
    let server = JwksServer::start(&[&key]).await;
    server.fail_next(usize::MAX);
    let verifier = server.verifier();
    assert!(!verifier.is_ready());
    assert_eq!(
        verifier.verify(&key.sign(&claims())).await,
        Err(VerifyError::KeysUnavailable)
    );
    assert!(matches!(
        verifier.refresh().await,
        Err(KeySourceError::Status(status)) if status == 503
    ));
    assert!(!verifier.is_ready());
}

#[tokio::test]
async fn spawn_refresh_retries_until_the_jwks_server_answers() {
    let key = TestKey::generate(Algorithm::EdDSA);
    let server = JwksServer::start(&[&key]).await;
    server.fail_next(3);
    let verifier = server.verifier();
    let shutdown = CancellationToken::new();
    let task = verifier.spawn_refresh(shutdown.clone());
    testkit::eventually(Duration::from_secs(10), "the first JWKS load", || {
        let ready = verifier.is_ready();
        async move { ready.then_some(()) }
    })
    .await;
    assert_eq!(server.requests(), 4, "three failures, then success");
    assert!(verifier.verify(&key.sign(&claims())).await.is_ok());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the refresh task stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn the_background_refresh_picks_up_rotated_keys_every_interval() {
    let old = TestKey::generate(Algorithm::EdDSA);
    let server = JwksServer::start(&[&old]).await;
    let mut config = config();
    config.refresh_interval = Duration::from_millis(200);
    let verifier = server.verifier_with(config);
    let shutdown = CancellationToken::new();
    let _task = verifier.spawn_refresh(shutdown.clone());
    let new = TestKey::generate(Algorithm::EdDSA);
    server.publish(&[&new]);
    testkit::eventually(Duration::from_secs(5), "a periodic refresh", || {
        let requests = server.requests();
        async move { (requests >= 3).then_some(()) }
    })
    .await;
    // The old key left the JWKS: its tokens fail although nothing asked for a refetch.
    assert_eq!(
        verifier.verify(&old.sign(&claims())).await,
        Err(VerifyError::UnknownKey)
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_failed_or_useless_refresh_keeps_the_previous_keys() {
    let key = TestKey::generate(Algorithm::EdDSA);
    let server = JwksServer::start(&[&key]).await;
    let verifier = server.loaded_verifier().await;
    server.fail_next(1);
    assert!(verifier.refresh().await.is_err());
    server.publish_raw(json!({"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]}));
    assert!(matches!(
        verifier.refresh().await,
        Err(KeySourceError::NoUsableKeys)
    ));
    assert!(verifier.is_ready());
    assert!(verifier.verify(&key.sign(&claims())).await.is_ok());
}

#[tokio::test]
async fn a_jwks_document_over_the_size_limit_is_refused() {
    let key = TestKey::generate(Algorithm::EdDSA);
    let server = JwksServer::start(&[&key]).await;
    let source = HttpJwks::new(server.url.clone()).max_bytes(64);
    let verifier = Verifier::new(config(), Arc::new(source));
    assert!(matches!(
        verifier.refresh().await,
        Err(KeySourceError::TooLarge { limit: 64 })
    ));
    assert!(!verifier.is_ready());
}

#[tokio::test]
async fn a_static_key_set_serves_identity_its_own_keys_and_follows_replacement() {
    let first = TestKey::generate(Algorithm::EdDSA);
    let source = Arc::new(StaticJwks::new(jwks(&[&first])));
    let verifier = Verifier::new(config(), source.clone());
    verifier.refresh().await.unwrap();
    assert!(verifier.verify(&first.sign(&claims())).await.is_ok());
    let second = TestKey::generate(Algorithm::ES256);
    source.set(jwks(&[&second]));
    verifier.refresh().await.unwrap();
    assert!(verifier.verify(&second.sign(&claims())).await.is_ok());
    assert_eq!(
        verifier.verify(&first.sign(&claims())).await,
        Err(VerifyError::UnknownKey)
    );
}

#[tokio::test]
async fn expiry_is_judged_by_the_injected_clock() {
    let key = TestKey::generate(Algorithm::EdDSA);
    let clock = service_kit::ManualClock::new(time::OffsetDateTime::now_utc());
    let verifier = Verifier::with_clock(
        config(),
        Arc::new(StaticJwks::new(jwks(&[&key]))),
        Arc::new(clock.clone()),
    );
    verifier.refresh().await.unwrap();
    let token = key.sign(&claims());
    assert!(verifier.verify(&token).await.is_ok());
    clock.advance(Duration::from_secs(900 + 30));
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::Expired));
}

#[tokio::test]
async fn a_token_verified_before_stops_working_once_its_key_leaves_the_jwks() {
    let old = TestKey::generate(Algorithm::ES256);
    let new = TestKey::generate(Algorithm::EdDSA);
    let source = Arc::new(StaticJwks::new(jwks(&[&old, &new])));
    let verifier = Verifier::new(config(), source.clone());
    verifier.refresh().await.unwrap();
    let token = old.sign(&claims());
    // Verified twice: the second answer comes from the verified-token cache.
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(verifier.verify(&token).await.unwrap().subject, "u-1");
    source.set(jwks(&[&new]));
    verifier.refresh().await.unwrap();
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::UnknownKey));
}
