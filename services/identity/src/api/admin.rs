//! The admin API (role `admin`): users and service clients.

use axum::Json;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use service_kit::{ApiJson, Problem};
use tessera_auth::Authenticated;

use super::error::ApiError;
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

#[derive(Debug, Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/admin/users?after=<id>&limit=<n>`: users in creation order.
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

/// `POST /v1/admin/users/{id}/disable`: the user can no longer log in; their refresh
/// tokens are revoked (access tokens expire within their lifetime).
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

/// A client as the admin API shows it (never its secret hash).
#[derive(Debug, Serialize)]
pub struct ClientView {
    client_id: String,
    roles: Vec<String>,
    disabled: bool,
    created_at: i64,
    /// Only in the answer to creation: shown once, never stored in clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

/// `GET /v1/admin/clients`: clients created through this API (registry-file clients are
/// managed by the operator).
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

#[derive(Debug, Deserialize)]
pub struct NewClient {
    client_id: String,
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

/// `POST /v1/admin/clients`: creates a client and returns its secret, once.
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

/// `POST /v1/admin/clients/{id}/disable`
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
