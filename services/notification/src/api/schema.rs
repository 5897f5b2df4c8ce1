//! Schemas of bodies built elsewhere (problems from `service_kit` and `tessera_auth`):
//! documentation twins for the OpenAPI document, never constructed. The integration tests
//! compare them with what the running service answers.

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
    /// A stable, machine-readable code such as `unknown_template` or `idempotency_key_reused`.
    pub code: String,
    /// What went wrong with this request, for a person.
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

/// Media type of RFC 9457 problems.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The access token is missing (`missing_token`), or invalid or expired
/// (`invalid_token`).
#[derive(Debug, ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "An RFC 6750 `Bearer` challenge."))
)]
pub struct Unauthenticated(pub ProblemDoc);

/// `forbidden`: the access token lacks the `service` role.
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Forbidden(pub ProblemDoc);

/// `multiple_credentials`: more than one access token was sent.
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct MultipleCredentials(pub ProblemDoc);

/// `unsupported_media_type`: the body is not `application/json`.
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct UnsupportedMediaType(pub ProblemDoc);

/// `body_too_large`: the body is larger than the service accepts (`--max-body-bytes`,
/// 1 MiB by default).
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BodyTooLarge(pub ProblemDoc);

/// `invalid_body`: the JSON body does not have the documented members and types.
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct InvalidBody(pub ProblemDoc);

/// `unavailable` (the database is not reachable) or `auth_unavailable` (access tokens
/// cannot be checked yet): retry after a short wait.
#[derive(Debug, ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))
)]
pub struct Unavailable(pub ProblemDoc);
