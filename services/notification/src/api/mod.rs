//! Notification's HTTP API: one router per resource, merged here.

pub mod error;
pub mod notifications;
pub mod openapi;
pub mod schema;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The public API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/notifications", post(notifications::create))
        .route("/v1/notifications/{id}", get(notifications::get))
        .route("/openapi.json", get(openapi::serve))
        .with_state(state)
}
