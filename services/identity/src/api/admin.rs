//! The admin API (role `admin`): users and service clients.

use axum::Json;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use service_kit::{ApiJson, Problem};
use tessera_auth::Authenticated;
use utoipa::ToSchema;

use super::error::ApiError;
use super::schema::{
    BodyTooLarge, InvalidBody, MultipleCredentials, NotAdmin, PROBLEM_JSON, ProblemDoc,
    Unauthenticated, Unavailable, UnsupportedMediaType,
};
use super::users::{ADMIN_ROLE, UserView};
use crate::db;
use crate::db::clients::ClientRow;
use crate::events::{AuditAction, OutboxEvent};
use crate::secrets::random_token;
use crate::state::AppState;

/// Largest page of users.
const MAX_PAGE: i64 = 500;
/// Prefix of generated client secrets.
const CLIENT_SECRET_PREFIX: &str = "tsc_";

fn require_admin(principal: &tessera_auth::Principal) -> Result<(), ApiError> {
    principal.require_role(ADMIN_ROLE).map_err(|_| {
        ApiError::from(
            Problem::new(StatusCode::FORBIDDEN, "forbidden").detail("This needs the admin role."),
        )
    })
}

/// A page of a listing in creation order.
// Derived by path: the `path` macro names the trait `utoipa::IntoParams`, which an
// import would make an unnecessary qualification.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// The id of the last item of the previous page.
    after: Option<String>,
    /// Largest number of items; values outside 1 to 500 are clamped.
    #[param(default = 100, minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// List users
///
/// Users in creation order, a page at a time: pass the last id of a page as `after` to
/// get the next.
#[utoipa::path(
    get,
    path = "/v1/admin/users",
    tag = "admin",
    params(Page),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of users.", body = Vec<UserView>),
        (status = 400, description = "`multiple_credentials`, or a query that is not a page.",
            body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, response = NotAdmin),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(page): Query<Page>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    require_admin(&principal)?;
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let users = db::users::list(&state.pool, page.after.as_deref(), limit).await?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

/// Disable a user
///
/// The user can no longer log in; their refresh tokens are revoked (access tokens expire
/// within their lifetime).
#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/disable",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The user is disabled."),
        (status = 400, response = MultipleCredentials),
        (status = 401, response = Unauthenticated),
        (status = 403, response = NotAdmin),
        (status = 404, description = "`unknown_user`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 503, response = Unavailable),
    )
)]
pub async fn disable_user(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&principal)?;
    let now = state.clock.now();
    let event = OutboxEvent::audit(
        AuditAction::UserDisabled,
        &id,
        &json!({ "by": principal.subject }),
        now,
    );
    if db::users::disable(&state.pool, &id, now.unix_timestamp(), &[event]).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::new(StatusCode::NOT_FOUND, "unknown_user")
            .detail("No user has this id.")
            .into())
    }
}

/// A service client as the admin API shows it (never its secret hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    /// The client's name, the `sub` and `client_id` of its access tokens.
    client_id: String,
    /// The roles its access tokens carry.
    roles: Vec<String>,
    /// A disabled client can no longer get tokens.
    disabled: bool,
    /// Unix time in seconds.
    created_at: i64,
    /// Only in the answer to creation: shown once, never stored in clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = Password)]
    client_secret: Option<String>,
}

/// List service clients
///
/// The clients created through this API; clients of the registry file are managed by
/// the operator.
#[utoipa::path(
    get,
    path = "/v1/admin/clients",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every client, without secrets.", body = Vec<ClientView>),
        (status = 400, response = MultipleCredentials),
        (status = 401, response = Unauthenticated),
        (status = 403, response = NotAdmin),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_clients(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    require_admin(&principal)?;
    let clients = db::clients::list(&state.pool).await?;
    Ok(Json(
        clients
            .into_iter()
            .map(|c| ClientView {
                client_id: c.client_id,
                roles: c.roles,
                disabled: c.disabled,
                created_at: c.created_at,
                client_secret: None,
            })
            .collect(),
    ))
}

/// A service client to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewClient {
    /// 1 to 64 letters, digits, `-`, `_` and `.`.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._-]+$",
        example = "billing"
    )]
    client_id: String,
    /// Each like `client_id`; none by default.
    #[serde(default)]
    roles: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Create a service client
///
/// Answers the client with its secret, which is shown this once.
#[utoipa::path(
    post,
    path = "/v1/admin/clients",
    tag = "admin",
    request_body(content = NewClient, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new client, with `client_secret`.", body = ClientView),
        (status = 400, description = "`invalid_client_id`, `invalid_json` or `multiple_credentials`.",
            body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, response = NotAdmin),
        (status = 409, description = "`client_exists`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 415, response = UnsupportedMediaType),
        (status = 413, response = BodyTooLarge),
        (status = 422, response = InvalidBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create_client(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<NewClient>,
) -> Result<(StatusCode, Json<ClientView>), ApiError> {
    require_admin(&principal)?;
    if !valid_name(&body.client_id) || !body.roles.iter().all(|r| valid_name(r)) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid_client_id")
            .detail("client_id and roles are 1-64 characters of letters, digits and -_.")
            .into());
    }
    let secret = random_token(CLIENT_SECRET_PREFIX);
    let now = state.clock.now();
    let row = ClientRow {
        client_id: body.client_id.clone(),
        secret_hash: state.clients.hash_secret(&secret),
        roles: body.roles.clone(),
        disabled: false,
        created_at: now.unix_timestamp(),
    };
    let details = json!({ "by": principal.subject, "roles": body.roles });
    let event = OutboxEvent::audit(AuditAction::ClientCreated, &row.client_id, &details, now);
    if !db::clients::create(&state.pool, &row, &[event]).await? {
        return Err(Problem::new(StatusCode::CONFLICT, "client_exists")
            .detail("A client with this id exists.")
            .into());
    }
    Ok((
        StatusCode::CREATED,
        Json(ClientView {
            client_id: row.client_id,
            roles: row.roles,
            disabled: false,
            created_at: row.created_at,
            client_secret: Some(secret),
        }),
    ))
}

/// Disable a service client
///
/// The client can no longer get tokens; tokens already issued expire within their
/// lifetime.
#[utoipa::path(
    post,
    path = "/v1/admin/clients/{id}/disable",
    tag = "admin",
    params(("id" = String, Path, description = "The client's `client_id`.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The client is disabled."),
        (status = 400, response = MultipleCredentials),
        (status = 401, response = Unauthenticated),
        (status = 403, response = NotAdmin),
        (status = 404, description = "`unknown_client`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 503, response = Unavailable),
    )
)]
pub async fn disable_client(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&principal)?;
    let event = OutboxEvent::audit(
        AuditAction::ClientDisabled,
        &id,
        &json!({ "by": principal.subject }),
        state.clock.now(),
    );
    if db::clients::disable(&state.pool, &id, &[event]).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::new(StatusCode::NOT_FOUND, "unknown_client")
            .detail("No client has this id.")
            .into())
    }
}
