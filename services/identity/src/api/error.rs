//! Identity's HTTP error edge: 4xx as problem+json with stable codes, 5xx opaque with the
//! cause logged once here.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use service_kit::Problem;

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client error, shown as is.
    #[error("{0:?}")]
    Problem(Problem),
    /// A dependency is not usable yet (keys not loaded, database down); retry later.
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
    /// A server fault; logged, never shown.
    #[error("{context}: {source}")]
    Internal {
        context: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ApiError {
    /// Wraps a server-side failure with what was being done.
    pub fn internal(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal {
            context,
            source: Box::new(source),
        }
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            // The database is unreachable or saturated: the client may retry.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(%error, "database unavailable");
                Self::Unavailable("database")
            }
            error => Self::internal("database", error),
        }
    }
}

/// Seconds a client should wait after a 503.
const RETRY_AFTER_SECS: &str = "2";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Unavailable(what) => {
                tracing::warn!(what, "answering 503");
                let mut response = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                    .detail("The service is starting or a dependency is down; retry shortly.")
                    .into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
                response
            }
            Self::Internal { context, source } => {
                tracing::error!(context, error = %source, "request failed");
                Problem::internal().into_response()
            }
        }
    }
}
