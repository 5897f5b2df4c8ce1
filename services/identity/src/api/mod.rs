//! Identity's HTTP API: one router per resource, merged here.

pub mod admin;
pub mod discovery;
pub mod error;
pub mod oauth;
pub mod openapi;
pub mod schema;
pub mod users;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The public API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/signup", post(users::signup))
        .route("/v1/login", post(users::login))
        .route("/v1/logout", post(users::logout))
        .route("/v1/me", get(users::me))
        .route("/v1/admin/users", get(admin::list_users))
        .route("/v1/admin/users/{id}/disable", post(admin::disable_user))
        .route(
            "/v1/admin/clients",
            get(admin::list_clients).post(admin::create_client),
        )
        .route(
            "/v1/admin/clients/{id}/disable",
            post(admin::disable_client),
        )
        .route("/oauth2/token", post(oauth::token))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route("/oauth2/introspect", post(oauth::introspect))
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .route("/openapi.json", get(openapi::serve))
        .with_state(state)
}

/// Extra routes of the admin listener.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/debug/keys", get(discovery::debug_keys))
        .with_state(state)
}
