//! Discovery (`/.well-known/openid-configuration`) and the public keys
//! (`/.well-known/jwks.json`), and `/debug/keys` on the admin listener.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::{Value, json};

use super::error::ApiError;
use super::schema::{JwksDoc, ServerMetadataDoc, Unavailable};
use crate::state::AppState;

/// Server metadata
///
/// The OpenID Connect discovery document, also valid RFC 8414 authorization server
/// metadata: the issuer and the URLs of the endpoints and keys.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    responses((status = 200, description = "The metadata.", body = ServerMetadataDoc))
)]
pub async fn openid_configuration(State(state): State<AppState>) -> Json<Value> {
    let issuer = &state.settings.issuer;
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [state.settings.signing_algorithm],
    }))
}

/// Public keys
///
/// The keys that verify access tokens, cacheable for the configured max-age (verifiers'
/// cache lifetime, which the key policy's pre-publication covers).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    responses(
        (status = 200, description = "The JWKS.", body = JwksDoc,
            headers(("Cache-Control" = String, description = "`public, max-age=<seconds>`"))),
        (status = 503, response = Unavailable),
    )
)]
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !state.keys.is_ready() {
        return Err(ApiError::Unavailable("signing keys"));
    }
    let max_age = state.settings.jwks_max_age.as_secs();
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.keys.jwks_json().to_string(),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    Ok(response)
}

/// `GET /debug/keys` (admin listener): kid, algorithm, state, dates and RFC 7638
/// thumbprint of each key. Never private material.
pub async fn debug_keys(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "keys": state.keys.infos() }))
}
