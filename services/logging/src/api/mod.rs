//! The logging service's HTTP API: ingestion, queries, audit, the explorer page.

pub mod audit;
pub mod caller;
pub mod error;
pub mod explorer;
pub mod ingest;
pub mod openapi;
pub mod query;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The public API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/logs", post(ingest::export))
        .route("/v1/records", get(query::records))
        .route("/v1/records/histogram", get(query::histogram))
        .route("/v1/records/tail", get(query::tail))
        .route("/v1/audit/events", post(audit::append))
        .route("/v1/audit/records", get(audit::records))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/openapi.json", get(openapi::serve))
        .route("/", get(explorer::to_index))
        .route("/explorer", get(explorer::to_index))
        .route("/explorer/", get(explorer::index))
        .route("/explorer/explorer.js", get(explorer::script))
        .route("/explorer/explorer.css", get(explorer::style))
        .with_state(state)
}
