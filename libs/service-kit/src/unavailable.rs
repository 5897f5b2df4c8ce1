//! The 503 a service answers while a dependency is down, and which database errors mean
//! the database is down rather than the request at fault.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::Problem;

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_SECS: &str = "2";

/// Whether `error` says the database is unreachable or saturated, so that the client may
/// retry, rather than that this query failed.
pub fn database_unreachable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

/// A 503 `unavailable` problem saying `detail`, with `Retry-After`.
pub fn response(detail: &'static str) -> Response {
    let mut response = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        .detail(detail)
        .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_a_503_problem_asking_to_retry_after_two_seconds() {
        let response = response("The database is not reachable; retry shortly.");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            crate::problem::PROBLEM_JSON
        );
    }

    #[test]
    fn a_pool_timeout_is_unreachable_and_a_missing_row_is_not() {
        assert!(database_unreachable(&sqlx::Error::PoolTimedOut));
        assert!(!database_unreachable(&sqlx::Error::RowNotFound));
    }
}
