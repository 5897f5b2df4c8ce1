//! RFC 9457 `application/problem+json` error bodies, and the JSON extractor that answers
//! with them when a request body cannot be read.
//!
//! 4xx problems carry a stable `code` (machine readable) and a human `detail`. 5xx problems
//! are opaque: the cause is logged once where it happened, never sent to the client.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// The media type of every error body Tessera sends.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response body as defined by RFC 9457.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// A URI reference naming the problem type; stable across releases.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the problem type (the status reason phrase by default).
    pub title: String,
    /// The HTTP status code, repeated for clients that only see the body.
    pub status: u16,
    /// A stable, machine-readable code such as `invalid_json`.
    pub code: String,
    /// What went wrong with this request, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extra members, e.g. the rule a password broke.
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem with the given status and stable code; `type` is derived from the code.
    pub fn new(status: StatusCode, code: &str) -> Self {
        Self {
            type_uri: format!("https://tessera.dev/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail: None,
            extensions: serde_json::Map::new(),
        }
    }

    /// Adds the human explanation.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// An opaque server error. Log the cause before returning this.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
    }

    /// A problem for a bare error status produced by a layer (404, 405, 413, ...), so every
    /// error a client sees has the same shape.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, detail) = match status {
            StatusCode::NOT_FOUND => ("not_found", "No resource exists at this path."),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "This path does not accept this method.",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "body_too_large",
                "The request body is larger than this endpoint accepts.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "The request body has an unsupported content type.",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => (
                "unavailable",
                "The service could not answer in time; retry later.",
            ),
            s if s.is_server_error() => return Self::internal(),
            _ => ("bad_request", "The request was not understood."),
        };
        Self::new(status, code).detail(detail)
    }

    /// The status as a `StatusCode` (falls back to 500 for an invalid number).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match &rejection {
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            JsonRejection::JsonSyntaxError(_) => "invalid_json",
            JsonRejection::JsonDataError(_) => "invalid_body",
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            _ => "unreadable_body",
        };
        Self::new(status, code).detail(rejection.body_text())
    }
}

/// `axum::Json`, but a body that cannot be read or parsed answers with a [`Problem`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_opaque() {
        let problem = Problem::for_status(StatusCode::BAD_GATEWAY);
        assert_eq!(problem.code, "internal_error");
        assert_eq!(problem.detail, None);
    }

    #[test]
    fn extensions_are_flattened_into_the_body() {
        let problem = Problem::new(StatusCode::BAD_REQUEST, "weak_password").with("rule", "length");
        let json = serde_json::to_value(&problem).expect("serialises");
        assert_eq!(json["rule"], "length");
        assert_eq!(json["type"], "https://tessera.dev/problems/weak_password");
        assert_eq!(json["status"], 400);
    }
}
