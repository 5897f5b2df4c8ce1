//! The standard OAuth 2.0 endpoints: token (`client_credentials`, `refresh_token`),
//! revocation (RFC 7009) and introspection (RFC 7662). Errors use the RFC 6749 JSON shape
//! so any OAuth client library understands them.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, OAuthError, TokenError};
use super::schema::{BodyTooLarge, OAuthErrorDoc, Unavailable};
use super::users::{TokenResponse, issue_error, refresh_ttl_secs};
use crate::clients::Client;
use crate::db;
use crate::db::refresh::Rotation;
use crate::events::{AuditAction, OutboxEvent};
use crate::state::AppState;
use crate::tokens::{REFRESH_PREFIX, new_refresh_token};

/// The form of the `/oauth2` endpoints; each uses some of the members.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TokenForm {
    /// Token endpoint: `client_credentials` or `refresh_token`.
    #[schema(nullable = false, example = "client_credentials")]
    grant_type: Option<String>,
    /// Token and introspection endpoints: client authentication in the body
    /// (`client_secret_post`), instead of HTTP Basic.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// With `client_id`: the client's secret.
    #[schema(nullable = false, format = Password, write_only)]
    client_secret: Option<String>,
    /// Token endpoint, `refresh_token` grant: the refresh token to exchange.
    #[schema(nullable = false, format = Password, write_only)]
    refresh_token: Option<String>,
    /// Revocation and introspection endpoints: the token concerned.
    #[schema(nullable = false, format = Password, write_only)]
    token: Option<String>,
}

fn form(form: Result<axum::Form<TokenForm>, FormRejection>) -> Result<TokenForm, OAuthError> {
    form.map(|axum::Form(f)| f).map_err(|_| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        )
    })
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1: each part form-url-encoded) or the
/// form body — not both.
fn client_credentials(
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<Option<(String, String)>, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, value) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then(|| value.trim().to_owned())
        });
    let in_body = form.client_id.is_some() || form.client_secret.is_some();
    match (basic, in_body) {
        (Some(_), true) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client credentials must be sent once, in the Authorization header or the body",
        )),
        (Some(encoded), false) => {
            let decoded = STANDARD
                .decode(encoded)
                .map_err(|_| OAuthError::invalid_client())?;
            let decoded = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_client())?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(OAuthError::invalid_client)?;
            Ok(Some((form_decode(id), form_decode(secret))))
        }
        (None, true) => Ok(Some((
            form.client_id.clone().unwrap_or_default(),
            form.client_secret.clone().unwrap_or_default(),
        ))),
        (None, false) => Ok(None),
    }
}

fn form_decode(part: &str) -> String {
    percent_encoding::percent_decode_str(&part.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<Client, TokenError> {
    let Some((id, secret)) = client_credentials(headers, form)? else {
        return Err(OAuthError::invalid_client().into());
    };
    state
        .clients
        .authenticate(&id, &secret)
        .await?
        .ok_or_else(|| OAuthError::invalid_client().into())
}

fn no_store<T: IntoResponse>(body: T) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Issue an access token
///
/// The `client_credentials` grant authenticates a service client (HTTP Basic, or
/// `client_id` and `client_secret` in the form) and answers a token with its roles. The
/// `refresh_token` grant exchanges a user's refresh token for new tokens: the presented
/// token is used up, and presenting it again after a short grace period revokes the whole
/// login.
#[utoipa::path(
    post,
    path = "/oauth2/token",
    tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "New tokens; not to be cached.", body = TokenResponse,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_request` (not a form, no `grant_type`, client \
            credentials sent twice), `invalid_grant` (the refresh token is unknown, expired, revoked \
            or reused) or `unsupported_grant_type`.", body = OAuthErrorDoc),
        (status = 401, description = "`invalid_client`: client authentication failed.",
            body = OAuthErrorDoc, headers(("WWW-Authenticate" = String, description = "A `Basic` challenge."))),
        (status = 413, response = BodyTooLarge),
        (status = 503, response = Unavailable),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::Form<TokenForm>, FormRejection>,
) -> Result<Response, TokenError> {
    let form = form(body)?;
    match form.grant_type.as_deref() {
        Some("client_credentials") => {
            let client = authenticate_client(&state, &headers, &form).await?;
            let issued = state
                .tokens
                .issue(&client.client_id, &client.roles, Some(&client.client_id))
                .map_err(issue_error)?;
            let details = json!({
                "grant_type": "client_credentials",
                "jti": issued.jti,
                "kid": issued.kid,
                "roles": client.roles,
            });
            let event = OutboxEvent::audit(
                AuditAction::TokenIssued,
                &client.client_id,
                &details,
                state.clock.now(),
            );
            state
                .audit
                .record(event)
                .await
                .map_err(|e| ApiError::internal("audit", e))?;
            Ok(no_store(Json(TokenResponse {
                access_token: issued.access_token,
                token_type: "Bearer",
                expires_in: issued.expires_in,
                refresh_token: None,
            })))
        }
        Some("refresh_token") => {
            refresh(&state, form.refresh_token.as_deref().unwrap_or_default()).await
        }
        Some(_) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported: client_credentials, refresh_token",
        )
        .into()),
        None => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        )
        .into()),
    }
}

async fn refresh(state: &AppState, presented: &str) -> Result<Response, TokenError> {
    if !presented.starts_with(REFRESH_PREFIX) || presented.len() > 128 {
        return Err(OAuthError::invalid_grant().into());
    }
    let now = state.clock.now();
    let hash = crate::secrets::sha256(presented);
    // Everything that can fail happens before the token is spent: the access token is
    // signed and its audit record written in the rotation's transaction. A 5xx then
    // leaves the presented token as it was, so a retry after the reuse grace is not
    // taken for theft.
    let Some(user_id) = db::refresh::user_of(&state.pool, &hash).await? else {
        return Err(OAuthError::invalid_grant().into());
    };
    let user = db::users::by_id(&state.pool, &user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(OAuthError::invalid_grant)?;
    let issued = state
        .tokens
        .issue(&user.id, &user.roles, None)
        .map_err(issue_error)?;
    // Every access token identity hands out leaves an audit record: a login's in its
    // `login_succeeded`, a client's and a refresh's here.
    let details = json!({
        "grant_type": "refresh_token",
        "jti": issued.jti,
        "kid": issued.kid,
        "roles": user.roles,
    });
    let record = OutboxEvent::audit(AuditAction::TokenIssued, &user.id, &details, now);
    let (child, child_hash) = new_refresh_token();
    let grace = i64::try_from(state.settings.refresh_grace.as_secs()).unwrap_or(0);
    let unix = now.unix_timestamp();
    let outcome = db::refresh::rotate(
        &state.pool,
        &hash,
        &child_hash,
        unix,
        unix + refresh_ttl_secs(state),
        grace,
        &[record],
        |user, family| {
            OutboxEvent::audit(
                AuditAction::RefreshReuseDetected,
                user,
                &json!({ "family_id": family }),
                now,
            )
        },
    )
    .await?;
    match outcome {
        Rotation::Rotated { .. } | Rotation::GraceReuse { .. } => {}
        Rotation::ReuseDetected { user_id, family_id } => {
            tracing::warn!(%user_id, %family_id, "refresh token reuse detected; family revoked");
            return Err(OAuthError::invalid_grant().into());
        }
        Rotation::Invalid => return Err(OAuthError::invalid_grant().into()),
    }
    Ok(no_store(Json(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: Some(child),
    })))
}

/// Revoke a token
///
/// RFC 7009: a refresh token's family (the whole login) is revoked. Access tokens are
/// self-contained and expire on their own; the answer is 200 for any token, known or not,
/// so the endpoint reveals nothing.
#[utoipa::path(
    post,
    path = "/oauth2/revoke",
    tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Done, or nothing to do."),
        (status = 400, description = "`invalid_request`: not a form, or no `token`.", body = OAuthErrorDoc),
        (status = 413, response = BodyTooLarge),
        (status = 503, response = Unavailable),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    body: Result<axum::Form<TokenForm>, FormRejection>,
) -> Result<StatusCode, TokenError> {
    let form = form(body)?;
    let token = form.token.ok_or(OAuthError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "token is required",
    ))?;
    if token.starts_with(REFRESH_PREFIX) {
        db::refresh::revoke_family_of(&state.pool, &crate::secrets::sha256(&token), state.now())
            .await?;
    }
    Ok(StatusCode::OK)
}

/// RFC 7662 response: only `active` for a token that is not (or no longer) valid; the
/// token's claims besides for a valid access token.
#[derive(Debug, Serialize, Default, ToSchema)]
pub struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// For a service client's token: the client.
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    aud: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The roles the token grants.
    #[schema(nullable = false)]
    roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `Bearer`.
    #[schema(nullable = false, value_type = Option<String>)]
    token_type: Option<&'static str>,
}

/// Introspect a token
///
/// RFC 7662, for authenticated service clients (HTTP Basic, or `client_id` and
/// `client_secret` in the form): whether an access token is valid, and its claims.
#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("basic" = [])),
    responses(
        (status = 200, description = "The token's state; not to be cached.", body = Introspection,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_request`: not a form, or client credentials sent \
            twice.", body = OAuthErrorDoc),
        (status = 401, description = "`invalid_client`: client authentication failed.",
            body = OAuthErrorDoc, headers(("WWW-Authenticate" = String, description = "A `Basic` challenge."))),
        (status = 413, response = BodyTooLarge),
        (status = 503, response = Unavailable),
    )
)]
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::Form<TokenForm>, FormRejection>,
) -> Result<Response, TokenError> {
    let mut form = form(body)?;
    let token = form.token.take().unwrap_or_default();
    authenticate_client(&state, &headers, &form).await?;
    let answer = match state.verifier.verify(&token).await {
        Ok(principal) => {
            let claims = principal.claims;
            Introspection {
                active: true,
                sub: Some(claims.sub),
                client_id: claims.client_id,
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                iss: Some(claims.iss),
                aud: Some(claims.aud.0),
                jti: Some(claims.jti),
                roles: Some(claims.roles),
                token_type: Some("Bearer"),
            }
        }
        Err(_) => Introspection::default(),
    };
    Ok(no_store(Json(answer)))
}
