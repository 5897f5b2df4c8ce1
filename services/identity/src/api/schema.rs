//! Schemas of bodies the handlers build as JSON values or take from other crates
//! (problems, OAuth errors, discovery metadata, the JWKS): documentation twins for the
//! OpenAPI document, never constructed. The integration tests compare them with what the
//! running service answers.
//!
//! The problem responses every service answers alike are `service_kit::openapi`'s,
//! re-exported here beside this service's own.

pub use service_kit::openapi::{
    BodyTooLarge, InvalidBody, MultipleCredentials, PROBLEM_JSON, Unauthenticated,
    UnsupportedMediaType,
};
use utoipa::{ToResponse, ToSchema};

/// An RFC 9457 problem (`application/problem+json`), the shape of every error of the
/// `/v1` API (`service_kit::Problem`). 5xx problems carry no detail.
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
    /// A stable, machine-readable code such as `invalid_json` or `email_taken`.
    pub code: String,
    /// What went wrong with this request, for a person.
    #[schema(nullable = false)]
    pub detail: Option<String>,
    /// Extension of `weak_password`: the rule the password broke, `min_length`,
    /// `max_length` or `common_password`.
    #[schema(nullable = false)]
    pub rule: Option<String>,
    /// Extension of `too_many_attempts`: seconds until a login may be tried again.
    #[schema(nullable = false)]
    pub retry_after: Option<u64>,
}

/// An RFC 6749 §5.2 error, the shape of the errors of the `/oauth2` endpoints that
/// OAuth client libraries expect.
#[derive(Debug, ToSchema)]
#[schema(as = OAuthError)]
pub struct OAuthErrorDoc {
    #[schema(inline)]
    pub error: OAuthErrorCode,
    /// A sentence for the developer.
    pub error_description: String,
}

/// The RFC 6749 error codes the `/oauth2` endpoints use.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
}

/// OpenID Connect discovery document, also valid RFC 8414 authorization server metadata.
#[derive(Debug, ToSchema)]
#[schema(as = ServerMetadata)]
pub struct ServerMetadataDoc {
    /// The issuer (`iss`) of every token.
    #[schema(format = "uri")]
    pub issuer: String,
    #[schema(format = "uri")]
    pub jwks_uri: String,
    #[schema(format = "uri")]
    pub token_endpoint: String,
    #[schema(format = "uri")]
    pub revocation_endpoint: String,
    #[schema(format = "uri")]
    pub introspection_endpoint: String,
    #[schema(example = json!(["client_credentials", "refresh_token"]))]
    pub grant_types_supported: Vec<String>,
    #[schema(example = json!(["client_secret_basic", "client_secret_post"]))]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[schema(example = json!(["none"]))]
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    #[schema(example = json!(["client_secret_basic", "client_secret_post"]))]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// Empty: identity has no authorization endpoint.
    pub response_types_supported: Vec<String>,
    #[schema(example = json!(["public"]))]
    pub subject_types_supported: Vec<String>,
    /// The algorithm of the active signing key.
    #[schema(example = json!(["EdDSA"]))]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// An RFC 7517 JSON Web Key Set: the public keys that verify access tokens.
#[derive(Debug, ToSchema)]
#[schema(as = Jwks)]
pub struct JwksDoc {
    /// Every published key: the next, the active and the retiring ones.
    pub keys: Vec<JwkDoc>,
}

/// A public signing key (RFC 7517); members depend on `kty`.
#[derive(Debug, ToSchema)]
#[schema(as = Jwk)]
pub struct JwkDoc {
    /// `OKP` (Ed25519), `EC` (P-256) or `RSA`.
    #[schema(example = "OKP")]
    pub kty: String,
    /// The key id, the RFC 7638 thumbprint for generated keys; tokens name it in `kid`.
    pub kid: String,
    /// `EdDSA`, `ES256` or `RS256`.
    #[schema(example = "EdDSA")]
    pub alg: String,
    /// Always `sig`.
    #[schema(rename = "use", example = "sig")]
    pub key_use: String,
    /// `Ed25519` or `P-256` (OKP and EC keys).
    #[schema(nullable = false)]
    pub crv: Option<String>,
    /// Public point, base64url (OKP and EC keys).
    #[schema(nullable = false)]
    pub x: Option<String>,
    /// Public point, base64url (EC keys).
    #[schema(nullable = false)]
    pub y: Option<String>,
    /// Modulus, base64url (RSA keys).
    #[schema(nullable = false)]
    pub n: Option<String>,
    /// Exponent, base64url (RSA keys).
    #[schema(nullable = false)]
    pub e: Option<String>,
}

/// `forbidden`: the access token lacks the `admin` role.
#[derive(Debug, ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotAdmin(pub ProblemDoc);

/// `unavailable` (the database or the signing keys are not ready) or `auth_unavailable`
/// (access tokens cannot be checked yet): retry after a short wait.
#[derive(Debug, ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))
)]
pub struct Unavailable(pub ProblemDoc);
