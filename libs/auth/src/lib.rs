//! Access-token verification for the gateway and every service, plus the
//! client-credentials token source services use to call each other.
//!
//! A [`Verifier`] checks Tessera access tokens (RFC 9068 JWTs) by the rules of RFC 8725:
//! keys come only from the JWKS (cached, refreshed in the background and on an unknown
//! `kid`, single-flight and rate-limited), each key pins its algorithm, `none` and HMAC
//! are refused, `typ` must be `at+jwt`, and `iss`, `aud`, `exp`, `nbf` are enforced with a
//! small leeway. Verified tokens are remembered until they expire (while their key stays
//! published), so a client's repeated requests skip the signature check. The [`Authenticated`] extractor turns one `Authorization: Bearer` header
//! into a [`Principal`]; failures answer RFC 9457 problems (401, 400, 403, or 503 until the
//! keys are loaded).
//!
//! ```no_run
//! # use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use tessera_auth::{Authenticated, HttpJwks, Verifier, VerifierConfig};
//! async fn me(Authenticated(caller): Authenticated) -> String { caller.subject }
//! # async fn run(shutdown: tokio_util::sync::CancellationToken) {
//! let config = VerifierConfig::new("https://id.example", vec!["profile".into()]);
//! let jwks = HttpJwks::new("http://identity:8080/.well-known/jwks.json");
//! let verifier = Verifier::new(config, Arc::new(jwks));
//! verifier.spawn_refresh(shutdown); // `/readyz` can report `verifier.is_ready()`
//! // Any state works when `Arc<Verifier>: FromRef<State>`; handlers that need a role
//! // call `caller.require_role("admin")?` (403 otherwise).
//! let app: Router = Router::new().route("/me", get(me)).with_state(verifier);
//! # }
//! //! ```

mod cache;
mod claims;
mod client_credentials;
mod config;
mod error;
mod extract;
mod keys;
mod source;
mod token;
mod verifier;

pub use claims::{AccessClaims, Audience, Principal};
pub use client_credentials::ClientCredentials;
pub use config::{
    AuthArgs, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_MIN_REFETCH_INTERVAL,
    DEFAULT_REFRESH_INTERVAL, DEFAULT_VERIFIED_CACHE_ENTRIES, VerifierConfig,
};
pub use error::{AuthError, KeySourceError, TokenSourceError, VerifyError};
pub use extract::{Authenticated, bearer_token};
pub use source::{FetchFuture, HttpJwks, KeySource, MAX_JWKS_BYTES, StaticJwks};
pub use verifier::Verifier;

/// Re-exported so callers name the same JWKS types as this crate.
pub use jsonwebtoken::jwk::JwkSet;
