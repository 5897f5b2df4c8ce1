//! Notification's HTTP error edge: 4xx as problem+json with stable codes, 5xx opaque with the
//! cause logged once here.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use service_kit::Problem;
use tessera_auth::AuthError;

/// Seconds a client should wait after a 503.
const RETRY_AFTER_SECS: &str = "2";

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
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(%error, "database unavailable");
                Self::Unavailable
            }
            error => Self::Internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Auth(error) => error.into_response(),
            Self::Unavailable => {
                let mut response = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                    .detail("The database is not reachable; retry shortly.")
                    .into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
                response
            }
            Self::Internal(error) => {
                tracing::error!(%error, "request failed");
                Problem::internal().into_response()
            }
        }
    }
}
