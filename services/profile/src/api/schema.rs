//! Schemas of bodies built elsewhere (problems from `service_kit` and `tessera_auth`):
//! documentation twins for the OpenAPI document, never constructed. The integration tests
//! compare them with what the running service answers.
//!
//! The problem responses every service answers alike are `service_kit::openapi`'s,
//! re-exported here beside this service's own.

pub use service_kit::openapi::{
    BodyTooLarge, InvalidBody, MultipleCredentials, PROBLEM_JSON, Unauthenticated,
    UnsupportedMediaType,
};
use utoipa::{ToResponse, ToSchema};

/// An RFC 9457 problem (`application/problem+json`), the shape of every error
/// (`service_kit::Problem`). 5xx problems carry no detail.
#[derive(Debug, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// A URI naming the problem type, `https://tessera.dev/problems/{code}`.
    #[schema(rename = "type", format = "uri")]
    pub type_uri: String,
    /// The status code's reason phrase.
    pub title: String,
    /// The HTTP status code, repeated for clients that only see the body.
    pub status: u16,
    /// A stable, machine-readable code such as `invalid_locale` or `profile_exists`.
    pub code: String,
    /// What went wrong with this request, for a person.
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

/// `forbidden`: the profile is someone else's and the token lacks the `service` role.
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Forbidden(pub ProblemDoc);

/// `unavailable` (the database is not reachable) or `auth_unavailable` (access tokens
/// cannot be checked yet): retry after a short wait.
#[derive(Debug, ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))
)]
pub struct Unavailable(pub ProblemDoc);
