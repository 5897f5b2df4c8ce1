//! The project's own user API: signup, login, logout, and the current user.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use service_kit::{ApiJson, Problem};
use tessera_auth::Authenticated;
use utoipa::ToSchema;

use super::error::ApiError;
use super::schema::{
    BodyTooLarge, InvalidBody, MultipleCredentials, PROBLEM_JSON, ProblemDoc, Unavailable,
    UnsupportedMediaType,
};
use crate::db;
use crate::db::refresh::NewRefresh;
use crate::db::users::{CreateError, UserRow};
use crate::email::Email;
use crate::events::{AuditAction, OutboxEvent};
use crate::password::check_policy;
use crate::state::AppState;
use crate::tokens::{IssueError, new_refresh_token};

/// Role every user has.
pub const USER_ROLE: &str = "user";
/// Role of administrators.
pub const ADMIN_ROLE: &str = "admin";

/// An email address and a password, to sign up or log in.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Credentials {
    /// Trimmed and compared without regard to case.
    #[schema(format = Email, example = "ada@example.com")]
    email: String,
    /// At signup: 12 to 256 characters, not a commonly used password (every account's
    /// password has that length, so the bounds hold for logins too).
    #[schema(
        value_type = String,
        format = Password,
        write_only,
        min_length = 12,
        max_length = 256,
        example = "correct horse battery staple"
    )]
    password: SecretString,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// A UUIDv7, the `sub` of the user's access tokens.
    #[schema(format = "uuid")]
    pub id: String,
    /// Lower-cased.
    #[schema(format = Email)]
    pub email: String,
    /// `user`, and `admin` for administrators.
    pub roles: Vec<String>,
    /// A disabled user can no longer log in.
    pub disabled: bool,
    /// Unix time in seconds.
    pub created_at: i64,
}

impl From<UserRow> for UserView {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            roles: row.roles,
            disabled: row.disabled,
            created_at: row.created_at,
        }
    }
}

/// Tokens returned by login and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (RFC 9068, `typ: at+jwt`), to send as `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// An opaque `tsr_` token for the `refresh_token` grant, used up by it (rotation).
    /// Absent for service clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub refresh_token: Option<String>,
}

fn parse_email(raw: &str) -> Result<Email, Problem> {
    Email::parse(raw)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid_email").detail(e.to_string()))
}

fn invalid_credentials() -> ApiError {
    Problem::new(StatusCode::UNAUTHORIZED, "invalid_credentials")
        .detail("The email or password is wrong.")
        .into()
}

/// Create an account
///
/// The account gets the role `user`, and `admin` when its address is one of the
/// configured bootstrap administrators.
#[utoipa::path(
    post,
    path = "/v1/signup",
    tag = "users",
    request_body(content = Credentials, content_type = "application/json"),
    responses(
        (status = 201, description = "The new user.", body = UserView),
        (status = 400, description = "`invalid_email`, `weak_password` (with `rule`) or `invalid_json`.",
            body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 409, description = "`email_taken`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 415, response = UnsupportedMediaType),
        (status = 413, response = BodyTooLarge),
        (status = 422, response = InvalidBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn signup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let email = parse_email(&body.email)?;
    check_policy(secrecy::ExposeSecret::expose_secret(&body.password)).map_err(|rule| {
        Problem::new(StatusCode::BAD_REQUEST, "weak_password")
            .detail(rule.to_string())
            .with("rule", rule.rule())
    })?;
    let password_hash = state
        .passwords
        .hash(body.password)
        .await
        .map_err(|e| ApiError::internal("hashing", e))?;
    let now = state.clock.now();
    let mut roles = vec![USER_ROLE.to_owned()];
    if state.settings.bootstrap_admins.contains(email.as_str()) {
        roles.push(ADMIN_ROLE.to_owned());
    }
    let user = UserRow {
        id: uuid::Uuid::now_v7().to_string(),
        email: email.to_string(),
        password_hash,
        roles,
        disabled: false,
        created_at: now.unix_timestamp(),
    };
    let events = [
        OutboxEvent::user_registered(&user.id, email.as_str(), now),
        OutboxEvent::audit(AuditAction::Signup, &user.id, &json!({}), now),
    ];
    match db::users::create(&state.pool, &user, &events).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(user.into()))),
        Err(CreateError::Duplicate) => Err(Problem::new(StatusCode::CONFLICT, "email_taken")
            .detail("An account with this email address already exists.")
            .into()),
        Err(CreateError::Db(error)) => Err(error.into()),
    }
}

/// The address login attempts are counted against.
fn client_address(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> String {
    let forwarded = state
        .settings
        .trust_forwarded_for
        .then(|| {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
        })
        .flatten()
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 64);
    forwarded.map_or_else(|| peer.ip().to_string(), str::to_owned)
}

/// Log in
///
/// Answers an access token and a refresh token. Failed attempts are counted per account
/// and per client address; too many lock further attempts for a while.
#[utoipa::path(
    post,
    path = "/v1/login",
    tag = "users",
    request_body(content = Credentials, content_type = "application/json"),
    responses(
        (status = 200, description = "Tokens for the user.", body = TokenResponse),
        (status = 400, description = "`invalid_json`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 401, description = "`invalid_credentials`: the same answer for a wrong password, an \
            unknown address and a disabled user.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 415, response = UnsupportedMediaType),
        (status = 413, response = BodyTooLarge),
        (status = 422, response = InvalidBody),
        (status = 429, description = "`too_many_attempts` (with `retry_after`).", body = ProblemDoc,
            content_type = PROBLEM_JSON),
        (status = 503, response = Unavailable),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<TokenResponse>, ApiError> {
    let email = parse_email(&body.email).map_err(|_| invalid_credentials())?;
    let now = state.clock.now();
    let account_key = format!("account:{email}");
    let address_key = format!("address:{}", client_address(&state, peer, &headers));
    // The address first: an attempt refused for its (exhausted) address must not use up
    // one of the account's few attempts, or a locked-out address could keep locking any
    // account without trying a single password.
    let throttled = state
        .address_throttle
        .try_acquire(&[&address_key], now)
        .and_then(|()| state.account_throttle.try_acquire(&[&account_key], now));
    if let Err(locked) = throttled {
        let details = json!({ "reason": "locked" });
        state.audit.record_in_background(OutboxEvent::audit(
            AuditAction::LoginFailed,
            email.as_str(),
            &details,
            now,
        ));
        return Err(
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
                .detail("Too many login attempts; try again later.")
                .with("retry_after", locked.retry_after_secs)
                .into(),
        );
    }

    let user = db::users::by_email(&state.pool, email.as_str()).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let matched = state
        .passwords
        .verify(body.password, hash)
        .await
        .map_err(|e| ApiError::internal("hashing", e))?;
    let Some(mut user) = user.filter(|u| matched && !u.disabled) else {
        let details = json!({ "reason": "invalid_credentials" });
        state.audit.record_in_background(OutboxEvent::audit(
            AuditAction::LoginFailed,
            email.as_str(),
            &details,
            now,
        ));
        return Err(invalid_credentials());
    };
    state.account_throttle.reset(&account_key);

    if state.settings.bootstrap_admins.contains(&user.email)
        && !user.roles.iter().any(|r| r == ADMIN_ROLE)
    {
        user.roles.push(ADMIN_ROLE.to_owned());
        db::users::set_roles(&state.pool, &user.id, &user.roles).await?;
    }
    let issued = state
        .tokens
        .issue(&user.id, &user.roles, None)
        .map_err(issue_error)?;
    let (refresh_token, refresh_hash) = new_refresh_token();
    let family_id = uuid::Uuid::now_v7().to_string();
    let created_at = now.unix_timestamp();
    db::refresh::insert(
        &state.pool,
        &NewRefresh {
            token_hash: &refresh_hash,
            family_id: &family_id,
            user_id: &user.id,
            parent_hash: None,
            created_at,
            expires_at: created_at + refresh_ttl_secs(&state),
        },
    )
    .await?;
    let details = json!({ "jti": issued.jti, "kid": issued.kid });
    state
        .audit
        .record(OutboxEvent::audit(
            AuditAction::LoginSucceeded,
            &user.id,
            &details,
            now,
        ))
        .await
        .map_err(|e| ApiError::internal("audit", e))?;
    Ok(Json(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: Some(refresh_token),
    }))
}

pub(crate) fn refresh_ttl_secs(state: &AppState) -> i64 {
    i64::try_from(state.settings.refresh_ttl.as_secs()).unwrap_or(i64::MAX / 2)
}

pub(crate) fn issue_error(error: IssueError) -> ApiError {
    match error {
        IssueError::NoKey => ApiError::Unavailable("signing keys"),
        IssueError::Sign(e) => ApiError::internal("signing", e),
    }
}

/// The refresh token of the login to end.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Logout {
    #[schema(value_type = String, format = Password, write_only)]
    refresh_token: SecretString,
}

/// Log out
///
/// Revokes the refresh token's whole family (this login on every device that shares
/// it). Answers 204 whether or not the token was known.
#[utoipa::path(
    post,
    path = "/v1/logout",
    tag = "users",
    request_body(content = Logout, content_type = "application/json"),
    responses(
        (status = 204, description = "The login is over."),
        (status = 400, description = "`invalid_json`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 415, response = UnsupportedMediaType),
        (status = 413, response = BodyTooLarge),
        (status = 422, response = InvalidBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Logout>,
) -> Result<StatusCode, ApiError> {
    let hash = crate::secrets::sha256(secrecy::ExposeSecret::expose_secret(&body.refresh_token));
    db::refresh::revoke_family_of(&state.pool, &hash, state.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The current user
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user the access token was issued to.", body = UserView),
        (status = 400, response = MultipleCredentials),
        (status = 401, description = "`missing_token` or `invalid_token` (see `WWW-Authenticate`), or \
            `unknown_user`: the user no longer exists or is disabled.", body = ProblemDoc,
            content_type = PROBLEM_JSON),
        (status = 403, description = "`not_a_user`: a service client's token.", body = ProblemDoc,
            content_type = PROBLEM_JSON),
        (status = 503, response = Unavailable),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<UserView>, ApiError> {
    if principal.is_service() {
        return Err(Problem::new(StatusCode::FORBIDDEN, "not_a_user")
            .detail("Service tokens have no user.")
            .into());
    }
    let user = db::users::by_id(&state.pool, &principal.subject).await?;
    let user = user.filter(|u| !u.disabled).ok_or_else(|| {
        ApiError::from(
            Problem::new(StatusCode::UNAUTHORIZED, "unknown_user")
                .detail("The token's user no longer exists or is disabled."),
        )
    })?;
    Ok(Json(user.into()))
}
