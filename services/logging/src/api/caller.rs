//! Who may call what: senders of logs and audit events need a service token (role
//! `service`); readers need the `admin` role. With `--insecure-disable-auth` (the
//! all-in-one mode) every caller passes.

use axum::extract::FromRequestParts;
use http::request::Parts;
use tessera_auth::Authenticated;

use super::error::ApiError;
use crate::state::AppState;

/// The role of service clients (client-credentials tokens).
pub const SERVICE_ROLE: &str = "service";
/// The role allowed to read logs and the audit trail.
pub const READER_ROLE: &str = "admin";

async fn require(parts: &mut Parts, state: &AppState, role: &str) -> Result<(), ApiError> {
    if state.auth_disabled {
        return Ok(());
    }
    let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
    caller.require_role(role)?;
    Ok(())
}

/// A caller holding the `service` role.
#[derive(Debug, Clone, Copy)]
pub struct Sender;

impl FromRequestParts<AppState> for Sender {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(parts, state, SERVICE_ROLE).await.map(|()| Self)
    }
}

/// A caller holding the `admin` role.
#[derive(Debug, Clone, Copy)]
pub struct Reader;

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(parts, state, READER_ROLE).await.map(|()| Self)
    }
}
