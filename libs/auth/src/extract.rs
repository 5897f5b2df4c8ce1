//! The axum extractor for the authenticated caller: one bearer token from the
//! `Authorization` header, verified by the service's own [`Verifier`].

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use http::header::AUTHORIZATION;
use http::request::Parts;

use crate::claims::Principal;
use crate::error::{AuthError, VerifyError};
use crate::verifier::Verifier;

/// The authenticated caller. Needs `Arc<Verifier>: FromRef<S>`.
///
/// Identity is only ever read from a verified `Authorization: Bearer` token, never from
/// headers a proxy (or an attacker) could set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub Principal);

impl<S> FromRequestParts<S> for Authenticated
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        authenticate(token, &Arc::<Verifier>::from_ref(state)).await
    }
}

/// `Option<Authenticated>`: `None` when the request carries no credentials at all; a
/// request with bad or ambiguous credentials is still refused.
impl<S> OptionalFromRequestParts<S> for Authenticated
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match bearer_token(parts) {
            Ok(token) => authenticate(token, &Arc::<Verifier>::from_ref(state))
                .await
                .map(Some),
            Err(AuthError::Missing) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

async fn authenticate(token: &str, verifier: &Verifier) -> Result<Authenticated, AuthError> {
    // Before the first JWKS load every token would fail: answer 503 so clients retry,
    // instead of a 401 that makes them drop a good token.
    if !verifier.is_ready() {
        return Err(AuthError::KeysUnavailable);
    }
    Ok(Authenticated(verifier.verify(token).await?))
}

/// The one bearer token of the request.
///
/// Two `Authorization` headers, or one plus an `access_token` query parameter, are refused
/// outright: when two credentials travel, different hops may honour different ones.
pub fn bearer_token(parts: &Parts) -> Result<&str, AuthError> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some()
        || (first.is_some() && parts.uri.query().is_some_and(has_access_token_param))
    {
        return Err(AuthError::MultipleCredentials);
    }
    let Some(value) = first else {
        return Err(AuthError::Missing);
    };
    let malformed = || AuthError::Invalid(VerifyError::Malformed);
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, ...) is not a bearer credential.
        return Err(AuthError::Missing);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(malformed());
    }
    Ok(token)
}

/// Whether the query string has an `access_token` parameter, however it is encoded.
fn has_access_token_param(query: &str) -> bool {
    query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .any(|name| percent_decoded_eq(name, b"access_token"))
}

/// Compares a form-encoded name with `expected` without allocating (`%xx` and `+`).
fn percent_decoded_eq(encoded: &str, expected: &[u8]) -> bool {
    let bytes = encoded.as_bytes();
    let mut i = 0;
    let mut matched = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        let decoded = match (escaped, bytes[i]) {
            (Some(byte), _) => {
                i += 3;
                byte
            }
            (None, b'+') => {
                i += 1;
                b' '
            }
            (None, other) => {
                i += 1;
                other
            }
        };
        if expected.get(matched) != Some(&decoded) {
            return false;
        }
        matched += 1;
    }
    matched == expected.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str, authorization: &[&str]) -> Parts {
        let mut builder = http::Request::builder().uri(format!("/x{query}"));
        for value in authorization {
            builder = builder.header(AUTHORIZATION, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn an_encoded_access_token_parameter_is_still_recognised() {
        assert!(has_access_token_param("a=1&access_token=x"));
        assert!(has_access_token_param("access%5Ftoken=x"));
        assert!(has_access_token_param("access%5ftoken"));
        assert!(!has_access_token_param("access_tokens=x"));
        assert!(!has_access_token_param("my_access_token=x&access_toke=y"));
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_taken_verbatim() {
        assert_eq!(
            bearer_token(&parts("", &["bearer abc.def.ghi"])).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(bearer_token(&parts("", &["Bearer  abc"])).unwrap(), "abc");
    }

    #[test]
    fn a_non_bearer_scheme_counts_as_no_credentials() {
        assert!(matches!(
            bearer_token(&parts("", &["Basic dXNlcjpwdw=="])),
            Err(AuthError::Missing)
        ));
    }

    #[test]
    fn a_header_with_two_tokens_or_none_is_malformed() {
        for value in ["Bearer a b", "Bearer ", "Bearer"] {
            assert!(
                matches!(
                    bearer_token(&parts("", &[value])),
                    Err(AuthError::Invalid(VerifyError::Malformed))
                ),
                "{value}"
            );
        }
    }
}
