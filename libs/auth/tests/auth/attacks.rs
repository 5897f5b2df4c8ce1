//! Every known way to forge or smuggle an access token, each refused for its own reason.

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tessera_auth::VerifyError;
use tessera_keys::Algorithm;

use crate::support::{JwksServer, TestKey, b64, claims, claims_with, now, serve};

async fn setup() -> (TestKey, JwksServer) {
    let key = TestKey::generate(Algorithm::EdDSA);
    let server = JwksServer::start(&[&key]).await;
    (key, server)
}

#[tokio::test]
async fn an_unsecured_token_with_alg_none_is_refused() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let header = b64(json!({"alg": "none", "typ": "at+jwt", "kid": key.kid()}).to_string());
    let payload = b64(claims().to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.c2ln"),
    ] {
        assert_eq!(
            verifier.verify(&token).await,
            Err(VerifyError::UnsupportedAlgorithm)
        );
    }
}

#[tokio::test]
async fn an_hmac_token_keyed_with_the_public_key_is_refused() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    // The classic algorithm confusion: the attacker knows the public key and uses its
    // bytes as the HMAC secret, hoping the verifier feeds the same bytes to HMAC.
    let one_key_json = serde_json::to_vec(&key.jwk()).unwrap();
    let key_set_json = serde_json::to_vec(&crate::support::jwks(&[&key])).unwrap();
    for secret in [one_key_json, key_set_json] {
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS384,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let mut header = key.header();
            header.alg = alg;
            let token =
                jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret))
                    .unwrap();
            assert_eq!(
                verifier.verify(&token).await,
                Err(VerifyError::UnsupportedAlgorithm),
                "{alg:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_tampered_payload_fails_the_signature_check() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let token = key.sign(&claims());
    assert!(verifier.verify(&token).await.is_ok());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = b64(claims_with("roles", json!(["admin"])).to_string());
    let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    assert_eq!(
        verifier.verify(&forged).await,
        Err(VerifyError::BadSignature)
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let token = key.sign(&claims_with("exp", json!(now() - 120)));
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::Expired));
}

#[tokio::test]
async fn a_token_whose_nbf_is_in_the_future_is_refused() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let token = key.sign(&claims_with("nbf", json!(now() + 600)));
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::NotYetValid));
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let token = key.sign(&claims_with("iss", json!("https://evil.test")));
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::WrongIssuer));
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let token = key.sign(&claims_with("aud", json!(["billing", "logging"])));
    assert_eq!(
        verifier.verify(&token).await,
        Err(VerifyError::WrongAudience)
    );
}

#[tokio::test]
async fn a_token_signed_by_an_unpublished_key_is_refused_after_one_refetch() {
    let (_, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let stranger = TestKey::generate(Algorithm::EdDSA);
    let token = stranger.sign(&claims());
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::UnknownKey));
    assert_eq!(server.requests(), 2, "initial load plus one refetch");
}

#[tokio::test]
async fn a_kid_shaped_like_a_path_or_sql_is_refused_without_a_refetch() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    for kid in ["../../etc/passwd", "' OR 1=1 --", &"k".repeat(129)] {
        let mut header = key.header();
        header.kid = Some(kid.to_owned());
        let token = key.sign_with_header(&header, &claims());
        assert_eq!(
            verifier.verify(&token).await,
            Err(VerifyError::UnknownKey),
            "{kid}"
        );
    }
    assert_eq!(server.requests(), 1, "only the initial load");
}

#[tokio::test]
async fn a_token_without_kid_is_refused() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let mut header = key.header();
    header.kid = None;
    let token = key.sign_with_header(&header, &claims());
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::UnknownKey));
}

#[tokio::test]
async fn jku_and_x5u_headers_pointing_at_an_attacker_server_are_never_fetched() {
    let (_, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let attacker = TestKey::generate(Algorithm::EdDSA);
    let hits = Arc::new(AtomicUsize::new(0));
    let attacker_jwks = serde_json::to_value(crate::support::jwks(&[&attacker])).unwrap();
    let counter = Arc::clone(&hits);
    let attacker_addr = serve(Router::new().fallback(get(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let body = attacker_jwks.clone();
        async move { axum::Json(body) }
    })))
    .await;
    let mut header = attacker.header();
    header.jku = Some(format!("http://{attacker_addr}/jwks.json"));
    header.x5u = Some(format!("http://{attacker_addr}/cert.pem"));
    let token = attacker.sign_with_header(&header, &claims());
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::UnknownKey));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the attacker server was contacted"
    );
}

#[tokio::test]
async fn an_embedded_jwk_header_is_ignored_and_the_published_key_decides() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let attacker = TestKey::generate(Algorithm::EdDSA);
    // The attacker claims the published kid but brings their own key (and certificate).
    let mut header = attacker.header();
    header.kid = Some(key.kid().to_owned());
    header.jwk = Some(attacker.jwk());
    header.x5c = Some(vec!["MIIBszCCAVmgAwIBAgIUQ==".into()]);
    let token = attacker.sign_with_header(&header, &claims());
    assert_eq!(
        verifier.verify(&token).await,
        Err(VerifyError::BadSignature)
    );
}

#[tokio::test]
async fn a_100_kb_token_is_refused_before_anything_else() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let token = key.sign(&claims_with("pad", json!("x".repeat(100 * 1024))));
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::TooLarge));
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn broken_base64_or_a_wrong_shape_is_malformed() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    let token = key.sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let cases = [
        format!("{}*.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}%%.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}!", parts[0], parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.{}", parts[2]),
        format!("{}.{}.{}", b64("not json"), parts[1], parts[2]),
        String::new(),
    ];
    for case in cases {
        assert_eq!(
            verifier.verify(&case).await,
            Err(VerifyError::Malformed),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_token_typed_jwt_like_an_id_token_is_refused() {
    let (key, server) = setup().await;
    let verifier = server.loaded_verifier().await;
    for typ in [Some("JWT"), Some("id_token+jwt"), None] {
        let mut header = key.header();
        header.typ = typ.map(str::to_owned);
        let token = key.sign_with_header(&header, &claims());
        assert_eq!(
            verifier.verify(&token).await,
            Err(VerifyError::WrongType),
            "{typ:?}"
        );
    }
}

#[tokio::test]
async fn a_header_alg_other_than_the_key_alg_is_refused() {
    let ed = TestKey::generate(Algorithm::EdDSA);
    let ec = TestKey::generate(Algorithm::ES256);
    let server = JwksServer::start(&[&ed, &ec]).await;
    let verifier = server.loaded_verifier().await;
    // Header says EdDSA and names the ES256 key; signed with an Ed25519 key.
    let mut header = ed.header();
    header.kid = Some(ec.kid().to_owned());
    let token = ed.sign_with_header(&header, &claims());
    assert_eq!(
        verifier.verify(&token).await,
        Err(VerifyError::AlgorithmMismatch)
    );
    // And the other way round.
    let mut header: Header = ec.header();
    header.kid = Some(ed.kid().to_owned());
    let token = ec.sign_with_header(&header, &claims());
    assert_eq!(
        verifier.verify(&token).await,
        Err(VerifyError::AlgorithmMismatch)
    );
}
