//! Profile's HTTP API: one router per resource, merged here.

pub mod error;
pub mod openapi;
pub mod profiles;
pub mod schema;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The public API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/profiles", post(profiles::create))
        .route("/v1/profiles/me", get(profiles::me).patch(profiles::update))
        .route("/v1/profiles/{user_id}", get(profiles::by_user))
        .route("/openapi.json", get(openapi::serve))
        .with_state(state)
}
