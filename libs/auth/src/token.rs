//! A compact JWS taken apart with nothing trusted yet: the header checks that need no key
//! (size, algorithm allow-list, explicit typing, `kid` syntax), then the signature check
//! against a pinned key, then the claim checks.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::claims::{AccessClaims, Audience};
use crate::config::VerifierConfig;
use crate::error::VerifyError;
use crate::keys::{PinnedKey, is_well_formed_kid};

/// The header members this verifier reads. Everything else, notably `jku`, `x5u`, `jwk`
/// and `x5c`, is ignored without being parsed: keys only ever come from the JWKS.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// A token whose header passed the key-independent checks.
pub(crate) struct UnverifiedToken<'a> {
    algorithm: Algorithm,
    kid: String,
    signing_input: &'a str,
    signature: &'a str,
    payload: Vec<u8>,
}

impl<'a> UnverifiedToken<'a> {
    /// Splits `token` and checks its header, in the order RFC 8725 suggests: cheap and
    /// key-independent refusals first, so forged tokens cost as little as possible.
    pub(crate) fn parse(token: &'a str, max_bytes: usize) -> Result<Self, VerifyError> {
        if token.len() > max_bytes {
            return Err(VerifyError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| VerifyError::Malformed)?;
        // Duplicate members are refused by serde, so no parser differential on `alg`.
        let parsed: Header<'_> =
            serde_json::from_slice(&header_json).map_err(|_| VerifyError::Malformed)?;
        let algorithm = match parsed.alg.as_ref() {
            "EdDSA" => Algorithm::EdDSA,
            "ES256" => Algorithm::ES256,
            "RS256" => Algorithm::RS256,
            // `none`, every HS*, PS*, ES384...: never routed to any key.
            _ => return Err(VerifyError::UnsupportedAlgorithm),
        };
        let typ_ok = parsed.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::WrongType);
        }
        if parsed.crit.is_some() {
            return Err(VerifyError::UnsupportedCritical);
        }
        let kid = match parsed.kid {
            Some(kid) if is_well_formed_kid(&kid) => kid.into_owned(),
            _ => return Err(VerifyError::UnknownKey),
        };
        // Checked only now so that an unsecured (`alg: none`) token, which has an empty
        // signature, is reported as the algorithm attack it is.
        if payload.is_empty() || signature.is_empty() {
            return Err(VerifyError::Malformed);
        }
        let payload_json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| VerifyError::Malformed)?;
        Ok(Self {
            algorithm,
            kid,
            signing_input: &token[..header.len() + 1 + payload.len()],
            signature,
            payload: payload_json,
        })
    }

    /// The `kid`, already known to be well formed.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// Checks the signature with `key`, whose algorithm, not the token's, decides.
    pub(crate) fn verify_signature(&self, key: &PinnedKey) -> Result<(), VerifyError> {
        if self.algorithm != key.algorithm {
            return Err(VerifyError::AlgorithmMismatch);
        }
        match jsonwebtoken::crypto::verify(
            self.signature,
            self.signing_input.as_bytes(),
            &key.key,
            key.algorithm,
        ) {
            Ok(true) => Ok(()),
            Err(error) if matches!(error.kind(), ErrorKind::Base64(_)) => {
                Err(VerifyError::Malformed)
            }
            Ok(false) | Err(_) => Err(VerifyError::BadSignature),
        }
    }

    /// Reads and checks the claims; call only after [`Self::verify_signature`].
    pub(crate) fn claims(
        &self,
        config: &VerifierConfig,
        now: i64,
    ) -> Result<AccessClaims, VerifyError> {
        let raw: RawClaims =
            serde_json::from_slice(&self.payload).map_err(|_| VerifyError::Malformed)?;
        raw.check(config, now)
    }
}

/// The payload with every claim optional, so a missing claim is told apart from a
/// malformed one.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    client_id: Option<String>,
}

fn required<T>(value: Option<T>, name: &'static str) -> Result<T, VerifyError> {
    value.ok_or(VerifyError::MissingClaim(name))
}

fn non_empty(value: Option<String>, name: &'static str) -> Result<String, VerifyError> {
    required(value.filter(|v| !v.is_empty()), name)
}

impl RawClaims {
    fn check(self, config: &VerifierConfig, now: i64) -> Result<AccessClaims, VerifyError> {
        let leeway = i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX);
        let iss = required(self.iss, "iss")?;
        if iss != config.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        let aud = required(self.aud, "aud")?;
        if !config.audiences.iter().any(|a| aud.contains(a)) {
            return Err(VerifyError::WrongAudience);
        }
        let exp = required(self.exp, "exp")?;
        // RFC 7519 §4.1.4: valid only while the current time is before `exp`.
        if now >= exp.saturating_add(leeway) {
            return Err(VerifyError::Expired);
        }
        let iat = required(self.iat, "iat")?;
        // RFC 9068 makes `nbf` optional; absent, the token is valid from its issue time.
        let nbf = self.nbf.unwrap_or(iat);
        let latest_start = now.saturating_add(leeway);
        if nbf > latest_start || iat > latest_start {
            return Err(VerifyError::NotYetValid);
        }
        Ok(AccessClaims {
            iss,
            sub: non_empty(self.sub, "sub")?,
            aud,
            exp,
            iat,
            nbf,
            jti: non_empty(self.jti, "jti")?,
            roles: self.roles,
            client_id: self.client_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn config() -> VerifierConfig {
        let mut config = VerifierConfig::new("https://id.test", vec!["api".into(), "gw".into()]);
        config.leeway = Duration::from_secs(30);
        config
    }

    fn claims() -> Value {
        json!({"iss": "https://id.test", "sub": "u1", "aud": ["other", "gw"], "exp": NOW + 60,
               "iat": NOW, "nbf": NOW, "jti": "t1", "roles": ["user"]})
    }

    fn check(claims: &Value) -> Result<AccessClaims, VerifyError> {
        serde_json::from_value::<RawClaims>(claims.clone())
            .unwrap()
            .check(&config(), NOW)
    }

    fn with(key: &str, value: Value) -> Value {
        let mut claims = claims();
        claims[key] = value;
        claims
    }

    fn without(key: &str) -> Value {
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    #[test]
    fn valid_claims_pass_when_any_audience_matches() {
        let claims = check(&claims()).unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.roles, ["user"]);
    }

    #[test]
    fn each_required_claim_is_enforced() {
        for name in ["iss", "sub", "aud", "exp", "iat", "jti"] {
            assert_eq!(
                check(&without(name)),
                Err(VerifyError::MissingClaim(name)),
                "{name}"
            );
        }
        assert_eq!(
            check(&with("sub", json!(""))),
            Err(VerifyError::MissingClaim("sub"))
        );
    }

    #[test]
    fn expiry_is_enforced_with_leeway_and_exp_itself_is_already_too_late() {
        assert!(check(&with("exp", json!(NOW - 29))).is_ok());
        assert_eq!(
            check(&with("exp", json!(NOW - 30))),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn a_token_issued_in_the_future_is_not_valid_yet() {
        assert!(check(&with("iat", json!(NOW + 30))).is_ok());
        assert_eq!(
            check(&with("iat", json!(NOW + 31))),
            Err(VerifyError::NotYetValid)
        );
        assert_eq!(
            check(&with("nbf", json!(NOW + 31))),
            Err(VerifyError::NotYetValid)
        );
    }

    #[test]
    fn a_missing_nbf_defaults_to_the_issue_time() {
        let claims = check(&without("nbf")).unwrap();
        assert_eq!(claims.nbf, NOW);
    }

    #[test]
    fn a_claim_of_the_wrong_type_is_malformed() {
        let result = serde_json::from_value::<RawClaims>(with("exp", json!("tomorrow")));
        assert!(result.is_err());
    }

    #[test]
    fn a_header_with_crit_is_refused() {
        let header =
            URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k","crit":["b64"]}"#);
        let token = format!("{header}.e30.c2ln");
        assert!(matches!(
            UnverifiedToken::parse(&token, 8192),
            Err(VerifyError::UnsupportedCritical)
        ));
    }

    #[test]
    fn a_header_with_a_duplicate_alg_is_malformed() {
        let header =
            URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"k"}"#);
        let token = format!("{header}.e30.c2ln");
        assert!(matches!(
            UnverifiedToken::parse(&token, 8192),
            Err(VerifyError::Malformed)
        ));
    }

    #[test]
    fn typ_is_compared_without_case_and_accepts_the_media_type_form() {
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            let header =
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"EdDSA","typ":"{typ}","kid":"k"}}"#));
            let token = format!("{header}.e30.c2ln");
            assert!(UnverifiedToken::parse(&token, 8192).is_ok(), "{typ}");
        }
    }
}
