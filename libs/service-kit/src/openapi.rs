//! What every service's OpenAPI document shares: rendering and serving it, the bearer
//! security scheme, and the problem responses the service kit and `tessera_auth` answer
//! alike in every service.
//!
//! The `Problem` schema itself stays in each service: its examples of `code` and its
//! extension members are the service's own. The shared responses refer to it by name.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr, Schema};
use utoipa::{Modify, PartialSchema, ToResponse, ToSchema};

pub use crate::problem::PROBLEM_JSON;

/// `document` as pretty JSON with a final newline: the content of a service's committed
/// `openapi.json` and the body of its `GET /openapi.json`.
pub fn pretty_json(document: &OpenApi) -> String {
    let mut json = document
        .to_pretty_json()
        .expect("the OpenAPI document serializes to JSON");
    json.push('\n');
    json
}

/// The answer of `GET /openapi.json`: `json` (built once by the caller, as the document
/// only changes with the code) as `application/json`.
pub fn json_response(json: &'static str) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response()
}

/// The HTTP bearer scheme of access tokens (JWTs), described by `description`.
pub fn bearer_scheme(description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(description))
            .build(),
    )
}

/// Adds the `bearer` security scheme the operations name, which the derive cannot
/// declare: `modifiers(&BEARER)` with a `const BEARER: BearerSecurity`.
#[derive(Debug)]
pub struct BearerSecurity {
    /// Where the access tokens come from, for the reader of the document.
    pub description: &'static str,
}

impl Modify for BearerSecurity {
    fn modify(&self, document: &mut OpenApi) {
        document
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", bearer_scheme(self.description));
    }
}

/// A reference to the `Problem` schema (RFC 9457), which each service declares with its
/// own codes and extensions; never constructed.
#[derive(Debug)]
pub struct ProblemRef;

impl PartialSchema for ProblemRef {
    fn schema() -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(Self::name()))
    }
}

impl ToSchema for ProblemRef {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

/// The access token is missing (`missing_token`), or invalid or expired
/// (`invalid_token`).
#[derive(Debug, ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "An RFC 6750 `Bearer` challenge."))
)]
pub struct Unauthenticated(pub ProblemRef);

/// `multiple_credentials`: more than one access token was sent.
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct MultipleCredentials(pub ProblemRef);

/// `unsupported_media_type`: the body is not `application/json`.
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct UnsupportedMediaType(pub ProblemRef);

/// `body_too_large`: the body is larger than the service accepts (`--max-body-bytes`,
/// 1 MiB by default).
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BodyTooLarge(pub ProblemRef);

/// `invalid_body`: the JSON body does not have the documented members and types.
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct InvalidBody(pub ProblemRef);
