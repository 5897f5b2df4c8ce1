//! The logging service's HTTP error edge: 4xx problems with stable codes, retryable
//! conditions as 429/503 with `Retry-After` (never 500), other faults opaque.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use service_kit::Problem;

use crate::ingest::IngestError;

/// Seconds a sender should wait after 429 (queue full): the writer drains a full queue
/// in well under that.
const QUEUE_FULL_RETRY_AFTER: &str = "1";
/// Seconds to wait after 503 (database unavailable or still migrating).
const UNAVAILABLE_RETRY_AFTER: &str = "5";

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client error, shown as is.
    #[error("{0:?}")]
    Problem(Problem),
    /// Overloaded: retry shortly (429).
    #[error("overloaded")]
    Overloaded,
    /// A dependency is not usable; retry later (503).
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
    /// An authentication failure (401/403/503 as tessera-auth answers them).
    #[error("auth: {0}")]
    Auth(#[from] tessera_auth::AuthError),
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::QueueFull => Self::Overloaded,
            IngestError::Unavailable => Self::Unavailable("database"),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        // Every database failure of a read is worth a retry from the client's side; the
        // cause is logged here once.
        tracing::warn!(%error, "database query failed");
        Self::Unavailable("database")
    }
}

impl ApiError {
    /// A 400 with `code` and `detail`.
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::Problem(Problem::new(StatusCode::BAD_REQUEST, code).detail(detail))
    }
}

fn with_retry_after(problem: Problem, seconds: &'static str) -> Response {
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Overloaded => with_retry_after(
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "queue_full")
                    .detail("The ingestion queue is full; retry after the Retry-After delay."),
                QUEUE_FULL_RETRY_AFTER,
            ),
            Self::Unavailable(what) => with_retry_after(
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                    .detail(format!("The {what} is not available; retry shortly.")),
                UNAVAILABLE_RETRY_AFTER,
            ),
            Self::Auth(error) => error.into_response(),
        }
    }
}
