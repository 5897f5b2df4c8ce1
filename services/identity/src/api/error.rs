//! Identity's HTTP error edge: 4xx as problem+json with stable codes, 5xx opaque with the
//! cause logged once here; the `/oauth2` endpoints answer RFC 6749 errors instead.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use service_kit::{Problem, unavailable};

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
        if unavailable::database_unreachable(&error) {
            tracing::warn!(%error, "database unavailable");
            Self::Unavailable("database")
        } else {
            Self::internal("database", error)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Unavailable(what) => {
                tracing::warn!(what, "answering 503");
                unavailable::response(
                    "The service is starting or a dependency is down; retry shortly.",
                )
            }
            Self::Internal { context, source } => {
                tracing::error!(context, error = %source, "request failed");
                Problem::internal().into_response()
            }
        }
    }
}

/// An RFC 6749 §5.2 error, the answer of the `/oauth2` endpoints that OAuth client
/// libraries understand.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
}

impl OAuthError {
    pub(super) fn new(status: StatusCode, error: &'static str, description: &'static str) -> Self {
        Self {
            status,
            error,
            description,
        }
    }

    pub(super) fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
    }

    pub(super) fn invalid_grant() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the refresh token is invalid, expired or revoked",
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tessera\""),
            );
        }
        response
    }
}

/// Either error shape; both render themselves.
#[derive(Debug)]
pub enum TokenError {
    OAuth(OAuthError),
    Api(ApiError),
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        match self {
            Self::OAuth(e) => e.into_response(),
            Self::Api(e) => e.into_response(),
        }
    }
}

impl From<OAuthError> for TokenError {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

impl<E: Into<ApiError>> From<E> for TokenError {
    fn from(e: E) -> Self {
        Self::Api(e.into())
    }
}
