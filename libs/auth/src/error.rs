//! The errors of this crate: why a token was refused, why keys could not be loaded, why a
//! service token could not be obtained, and how an authentication failure answers HTTP.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use service_kit::Problem;

/// Seconds a client is asked to wait when the verification keys are not loaded yet: the
/// background refresh retries well within this, so one retry usually succeeds.
const KEYS_UNAVAILABLE_RETRY_AFTER_SECS: &str = "5";

/// Why an access token was refused.
///
/// The variants are for logs and metrics; clients only ever see `invalid_token` so that a
/// probing attacker learns nothing about which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token is longer than `max_token_bytes`; nothing else was looked at.
    #[error("token is larger than the configured limit")]
    TooLarge,
    /// The token is not three base64url parts with a JSON header and payload.
    #[error("token is malformed")]
    Malformed,
    /// The header names an algorithm other than `EdDSA`, `ES256` or `RS256` (`none`, HMAC, ...).
    #[error("token algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// The header `typ` is not `at+jwt` (RFC 9068), e.g. an ID token.
    #[error("token is not an access token (typ)")]
    WrongType,
    /// The header marks extensions critical (`crit`) that this verifier does not implement.
    #[error("token requires unsupported critical header extensions")]
    UnsupportedCritical,
    /// The `kid` is missing, not well formed, or names no published key.
    #[error("token signing key is unknown")]
    UnknownKey,
    /// The header `alg` differs from the algorithm the key is pinned to.
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    /// The signature does not verify with the named key.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    #[error("token is not meant for this audience")]
    WrongAudience,
    /// A required claim (`iss`, `sub`, `aud`, `exp`, `iat`, `jti`) is absent.
    #[error("token lacks the required claim `{0}`")]
    MissingClaim(&'static str),
    /// No verification keys have ever been loaded, so no token can be checked yet.
    #[error("verification keys are not loaded yet")]
    KeysUnavailable,
}

impl VerifyError {
    /// A stable snake-case name, for logs and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::WrongType => "wrong_type",
            Self::UnsupportedCritical => "unsupported_critical",
            Self::UnknownKey => "unknown_key",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// Why the verification keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    /// The JWKS endpoint could not be reached or the transfer failed.
    #[error("JWKS request failed")]
    Request(#[source] reqwest::Error),
    /// The JWKS endpoint answered with a non-success status.
    #[error("JWKS endpoint answered {0}")]
    Status(StatusCode),
    /// The JWKS document is larger than the limit.
    #[error("JWKS document is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The JWKS document is not a JSON Web Key Set.
    #[error("JWKS document is invalid")]
    Invalid(#[source] serde_json::Error),
    /// The key set holds no key this verifier can use; the previous keys are kept.
    #[error("JWKS holds no usable signature key")]
    NoUsableKeys,
    /// The fetch task ended without an answer (it panicked or the runtime shut down).
    #[error("JWKS fetch was interrupted")]
    Interrupted,
}

/// Why a client-credentials token could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum TokenSourceError {
    /// The token endpoint could not be reached or the transfer failed.
    #[error("token request failed")]
    Request(#[source] reqwest::Error),
    /// The token endpoint refused the request (e.g. 401 `invalid_client`).
    #[error("token endpoint answered {status} ({})", error.as_deref().unwrap_or("no error code"))]
    Rejected {
        /// The HTTP status.
        status: StatusCode,
        /// The OAuth2 `error` code from the body, when there was one.
        error: Option<String>,
    },
    /// The token endpoint answered success with a body that is not a bearer token response.
    #[error("token response is invalid: {0}")]
    InvalidResponse(&'static str),
}

/// An authentication or authorisation failure at the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request carries no bearer token.
    #[error("no access token")]
    Missing,
    /// The request carries more than one credential (two `Authorization` headers, or a
    /// header and an `access_token` query parameter): a token-smuggling attempt or a bug.
    #[error("more than one credential")]
    MultipleCredentials,
    /// The bearer token was refused.
    #[error("invalid access token: {0}")]
    Invalid(#[source] VerifyError),
    /// No verification keys are loaded yet; the caller should retry shortly.
    #[error("verification keys are not loaded yet")]
    KeysUnavailable,
    /// The caller is authenticated but lacks the role this operation requires.
    #[error("missing role {role}")]
    Forbidden {
        /// The role that was required.
        role: String,
    },
}

impl From<VerifyError> for AuthError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::KeysUnavailable => Self::KeysUnavailable,
            other => Self::Invalid(other),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        // RFC 6750 §3: the challenge carries an error code, never the reason, so an attacker
        // cannot tell which check a forged token failed. The reason is logged instead.
        let (problem, challenge, retry_after) = match &self {
            Self::Missing => (
                Problem::new(StatusCode::UNAUTHORIZED, "missing_token")
                    .detail("This endpoint requires an access token in the Authorization header."),
                Some("Bearer"),
                None,
            ),
            Self::MultipleCredentials => (
                Problem::new(StatusCode::BAD_REQUEST, "multiple_credentials")
                    .detail("Send exactly one access token, in the Authorization header."),
                Some(r#"Bearer error="invalid_request""#),
                None,
            ),
            Self::Invalid(reason) => {
                tracing::debug!(reason = reason.code(), "access token refused");
                (
                    Problem::new(StatusCode::UNAUTHORIZED, "invalid_token")
                        .detail("The access token is invalid or has expired."),
                    Some(r#"Bearer error="invalid_token""#),
                    None,
                )
            }
            Self::KeysUnavailable => (
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable")
                    .detail("Access tokens cannot be checked yet; retry shortly."),
                None,
                Some(KEYS_UNAVAILABLE_RETRY_AFTER_SECS),
            ),
            Self::Forbidden { role } => (
                Problem::new(StatusCode::FORBIDDEN, "forbidden")
                    .detail(format!("This operation requires the `{role}` role.")),
                Some(r#"Bearer error="insufficient_scope""#),
                None,
            ),
        };
        let mut response = problem.into_response();
        let headers = response.headers_mut();
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_unavailable_from_verify_becomes_a_503_not_a_401() {
        let response = AuthError::from(VerifyError::KeysUnavailable).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn an_invalid_token_answer_does_not_reveal_which_check_failed() {
        let expired = AuthError::from(VerifyError::Expired).into_response();
        let forged = AuthError::from(VerifyError::BadSignature).into_response();
        assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            expired.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
        assert_eq!(
            expired.headers()[header::CONTENT_TYPE],
            service_kit::problem::PROBLEM_JSON
        );
        assert_eq!(
            format!("{:?}", expired.headers()),
            format!("{:?}", forged.headers())
        );
    }
}
