//! Independent verification: user and service tokens checked by panva/jose (Node.js,
//! `tools/jose-check`) knowing only the discovery document and the JWKS, for each
//! algorithm identity can sign with.

use std::path::{Path, PathBuf};

use base64::Engine;
use http::StatusCode;
use serde_json::{Value, json};
use tessera_identity::tokens::TokenIssuer;

use crate::support::{Backend, PASSWORD, TestIdentity, claims};

const SECRET: &str = "tsc_another-long-random-client-secret-value";
/// identity's default audience, the one every Tessera verifier expects.
const AUDIENCE: &str = "tessera";

#[tokio::test]
async fn eddsa_tokens_verify_with_jose_from_the_jwks_alone() {
    verify_both_kinds_of_token("EdDSA", "OKP").await;
}

#[tokio::test]
async fn es256_tokens_verify_with_jose_from_the_jwks_alone() {
    verify_both_kinds_of_token("ES256", "EC").await;
}

#[tokio::test]
async fn rs256_tokens_verify_with_jose_from_the_jwks_alone() {
    verify_both_kinds_of_token("RS256", "RSA").await;
}

async fn verify_both_kinds_of_token(alg: &str, kty: &str) {
    let script = verify_script();
    let args = ["--key-algorithm", alg];
    let app = TestIdentity::with_billing_client(Backend::Sqlite, &args, SECRET).await;
    let verifier = Jose::discover(&app, script).await;
    let jwks = app.get_json("/.well-known/jwks.json", None).await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str()),
        (Some(kty), Some(alg))
    );
    let kid = key["kid"].as_str().expect("kid");

    let signup = app.signup("jose@example.com").await;
    assert_eq!(signup.status(), StatusCode::CREATED);
    let user_id = signup.json::<Value>().await.expect("json")["id"].clone();
    let user_token = access_token(&app.login("jose@example.com", PASSWORD).await);
    let user = verifier
        .verify(&user_token, alg)
        .await
        .expect("jose accepts the user token");
    assert_eq!(
        user["protectedHeader"],
        json!({ "alg": alg, "kid": kid, "typ": "at+jwt" })
    );
    let payload = &user["payload"];
    assert_eq!(payload["sub"], user_id);
    assert_eq!(payload["roles"], json!(["user"]));
    assert!(
        payload.get("client_id").is_none(),
        "a user token names no client"
    );
    assert_eq!(payload["iss"], json!(verifier.issuer));

    let response = app.client_token("billing", SECRET).await;
    assert_eq!(response.status(), StatusCode::OK);
    let client_token = access_token(&response.json().await.expect("json"));
    let client = verifier
        .verify(&client_token, alg)
        .await
        .expect("jose accepts the client token");
    assert_eq!(
        (
            client["protectedHeader"]["alg"].as_str(),
            client["protectedHeader"]["kid"].as_str()
        ),
        (Some(alg), Some(kid))
    );
    let payload = &client["payload"];
    assert_eq!(
        (payload["sub"].as_str(), payload["client_id"].as_str()),
        (Some("billing"), Some("billing"))
    );
    assert_eq!(payload["roles"], json!(["service"]));

    // The same signature over claims that now say "admin": jose must check signatures.
    let tampered = with_claims(&user_token, |claims| claims["roles"] = json!(["admin"]));
    let rejected = verifier
        .verify(&tampered, alg)
        .await
        .expect_err("jose rejects a tampered token");
    assert!(
        rejected.starts_with("ERR_JWS_SIGNATURE_VERIFICATION_FAILED"),
        "{rejected}"
    );

    // Genuinely signed by this key, but for another issuer: jose must check `iss`.
    let elsewhere = TokenIssuer {
        issuer: "http://elsewhere.test".to_owned(),
        ..app.state.tokens.clone()
    };
    let foreign = elsewhere
        .issue("billing", &["service".to_owned()], Some("billing"))
        .expect("issue")
        .access_token;
    let rejected = verifier
        .verify(&foreign, alg)
        .await
        .expect_err("jose rejects another issuer's token");
    assert!(
        rejected.starts_with("ERR_JWT_CLAIM_VALIDATION_FAILED") && rejected.contains("\"iss\""),
        "{rejected}"
    );
}

/// `verify.mjs` and the jose it imports, or a failure saying how to install them.
fn verify_script() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/jose-check");
    assert!(
        dir.join("node_modules/jose/package.json").is_file(),
        "panva/jose is not installed in {}: run `npm ci --prefix tools/jose-check` in the workspace root",
        dir.display()
    );
    dir.join("verify.mjs")
}

/// A verifier that knows what any relying party knows: the discovery document and the JWKS.
struct Jose {
    script: PathBuf,
    issuer: String,
    jwks_url: String,
}

impl Jose {
    async fn discover(app: &TestIdentity, script: PathBuf) -> Self {
        let config = app
            .get_json("/.well-known/openid-configuration", None)
            .await;
        let issuer = config["issuer"].as_str().expect("issuer").to_owned();
        let jwks_uri = config["jwks_uri"].as_str().expect("jwks_uri");
        // The test issuer's host name does not resolve: fetch the issuer's JWKS path from
        // the loopback address identity listens on.
        let path = jwks_uri
            .strip_prefix(&issuer)
            .expect("the JWKS is served under the issuer");
        Self {
            script,
            jwks_url: app.url(path),
            issuer,
        }
    }

    /// jose's verdict: the protected header and payload, or the error it rejected with.
    async fn verify(&self, token: &str, alg: &str) -> Result<Value, String> {
        let mut node = std::process::Command::new("node");
        node.arg(&self.script)
            .args([token, &self.jwks_url, &self.issuer, AUDIENCE, alg]);
        // node fetches the JWKS from this test's runtime, so wait for it on another thread.
        let output = tokio::task::spawn_blocking(move || node.output())
            .await
            .expect("join")
            .expect("run `node` (Node.js 20 or later must be on PATH)");
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        match output.status.code() {
            Some(0) => Ok(serde_json::from_slice(&output.stdout).expect("verify.mjs prints JSON")),
            Some(1) => Err(stderr),
            _ => panic!("verify.mjs did not run ({}): {stderr}", output.status),
        }
    }
}

fn access_token(tokens: &Value) -> String {
    tokens["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// `token` with edited claims and its original header and signature.
fn with_claims(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut edited = claims(token);
    edit(&mut edited);
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&edited).expect("claims json"));
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &payload;
    parts.join(".")
}
