//! Test fixtures: keys from tessera-keys, token signing (honest and hostile), and a real
//! local JWKS server that counts its requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tessera_auth::{HttpJwks, Verifier, VerifierConfig};
use tessera_keys::{Algorithm, Key, KeyState, SigningKey};

pub(crate) const ISSUER: &str = "https://identity.test";
pub(crate) const AUDIENCE: &str = "profile";

/// A generated key with everything a test needs to sign with it.
pub(crate) struct TestKey {
    pub(crate) key: Key,
    pub(crate) signer: SigningKey,
    pub(crate) encoding: EncodingKey,
}

impl TestKey {
    pub(crate) fn generate(alg: Algorithm) -> Self {
        let generated = tessera_keys::generate(alg).expect("key generation works");
        let now = time::OffsetDateTime::now_utc();
        let key = generated.into_key(KeyState::Active, now);
        let pem = key.private_key_pem.expose().as_bytes();
        let encoding = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
        }
        .expect("generated PEM loads");
        let signer = SigningKey::from_key(&key).expect("generated key signs");
        Self {
            key,
            signer,
            encoding,
        }
    }

    pub(crate) fn kid(&self) -> &str {
        &self.key.kid
    }

    pub(crate) fn jwk(&self) -> Jwk {
        self.key.public_jwk().expect("public JWK")
    }

    /// A token as identity issues it.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.signer.sign(claims).expect("signs")
    }

    /// A token with a hand-made header, signed with this key.
    pub(crate) fn sign_with_header(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("signs")
    }

    /// The header identity writes, for tests to alter.
    pub(crate) fn header(&self) -> Header {
        let mut header = Header::new(self.key.alg.to_jwt());
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.key.kid.clone());
        header
    }
}

pub(crate) fn jwks(keys: &[&TestKey]) -> JwkSet {
    JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect(),
    }
}

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Claims identity would issue for user `u-1`, valid for 15 minutes.
pub(crate) fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "sub": "u-1", "aud": AUDIENCE, "exp": now + 900, "iat": now,
        "nbf": now, "jti": "tok-1", "roles": ["user"]
    })
}

pub(crate) fn claims_with(key: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[key] = value;
    claims
}

pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Serves `router` on a fresh port of 127.0.0.1.
pub(crate) async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A JWKS endpoint whose key set tests replace, and which counts requests.
#[derive(Clone)]
pub(crate) struct JwksServer {
    pub(crate) url: String,
    state: Arc<JwksState>,
}

struct JwksState {
    jwks: Mutex<Value>,
    requests: AtomicUsize,
    failures_left: AtomicUsize,
    delay: Mutex<Duration>,
}

impl JwksServer {
    pub(crate) async fn start(keys: &[&TestKey]) -> Self {
        let state = Arc::new(JwksState {
            jwks: Mutex::new(serde_json::to_value(jwks(keys)).unwrap()),
            requests: AtomicUsize::new(0),
            failures_left: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
        });
        let router = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(Arc::clone(&state));
        let addr = serve(router).await;
        Self {
            url: format!("http://{addr}/.well-known/jwks.json"),
            state,
        }
    }

    pub(crate) fn publish(&self, keys: &[&TestKey]) {
        self.publish_raw(serde_json::to_value(jwks(keys)).unwrap());
    }

    pub(crate) fn publish_raw(&self, document: Value) {
        *self.state.jwks.lock().unwrap() = document;
    }

    pub(crate) fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The next `n` requests answer 503.
    pub(crate) fn fail_next(&self, n: usize) {
        self.state.failures_left.store(n, Ordering::SeqCst);
    }

    /// Every answer waits this long first (to make concurrent callers overlap).
    pub(crate) fn delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    pub(crate) fn verifier(&self) -> Arc<Verifier> {
        self.verifier_with(config())
    }

    pub(crate) fn verifier_with(&self, config: VerifierConfig) -> Arc<Verifier> {
        Verifier::new(config, Arc::new(HttpJwks::new(self.url.clone())))
    }

    /// A verifier that has loaded the current keys (one request).
    pub(crate) async fn loaded_verifier(&self) -> Arc<Verifier> {
        let verifier = self.verifier();
        verifier.refresh().await.expect("JWKS loads");
        verifier
    }
}

async fn serve_jwks(State(state): State<Arc<JwksState>>) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *state.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let failing = state
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let document = state.jwks.lock().unwrap().clone();
    axum::Json(document).into_response()
}

pub(crate) fn config() -> VerifierConfig {
    VerifierConfig::new(ISSUER, vec![AUDIENCE.into()])
}
