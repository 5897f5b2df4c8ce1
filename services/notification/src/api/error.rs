//! Notification's HTTP error edge: 4xx as problem+json with stable codes, 5xx opaque with the
//! cause logged once here.

use axum::response::{IntoResponse, Response};
use service_kit::{Problem, unavailable};
use tessera_auth::AuthError;

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client error, shown as is.
    #[error("{0:?}")]
    Problem(Problem),
    /// The caller is not authenticated or not allowed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The database is unreachable or saturated; retry later.
    #[error("database unavailable")]
    Unavailable,
    /// A server fault; logged, never shown.
    #[error("database: {0}")]
    Internal(sqlx::Error),
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if unavailable::database_unreachable(&error) {
            tracing::warn!(%error, "database unavailable");
            Self::Unavailable
        } else {
            Self::Internal(error)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Auth(error) => error.into_response(),
            Self::Unavailable => {
                unavailable::response("The database is not reachable; retry shortly.")
            }
            Self::Internal(error) => {
                tracing::error!(%error, "request failed");
                Problem::internal().into_response()
            }
        }
    }
}
