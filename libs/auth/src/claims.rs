//! The claims of a Tessera access token (RFC 9068) and the authenticated caller built from
//! them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::AuthError;

/// RFC 9068 access-token claims as Tessera issues them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuer: identity's public URL.
    pub iss: String,
    /// The subject: a user id, or the client id for service tokens.
    pub sub: String,
    /// The services this token is meant for.
    pub aud: Audience,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: i64,
    /// Start of validity, seconds since the Unix epoch.
    pub nbf: i64,
    /// The token id, unique per token (revocation and audit refer to it).
    pub jti: String,
    /// The roles granted to the subject.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The OAuth2 client the token was issued to; present on service tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The `aud` claim: one audience or several.
///
/// RFC 7519 allows a single string or an array; both are read. A single audience is
/// written as a string (what most libraries expect), several as an array.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience(pub Vec<String>);

impl Audience {
    /// An audience of one.
    pub fn single(audience: impl Into<String>) -> Self {
        Self(vec![audience.into()])
    }

    /// Whether `audience` is among the audiences.
    pub fn contains(&self, audience: &str) -> bool {
        self.0.iter().any(|a| a == audience)
    }
}

impl From<String> for Audience {
    fn from(audience: String) -> Self {
        Self(vec![audience])
    }
}

impl From<Vec<String>> for Audience {
    fn from(audiences: Vec<String>) -> Self {
        Self(audiences)
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => Self(vec![one]),
            OneOrMany::Many(many) => Self(many),
        })
    }
}

/// The authenticated caller: a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The `sub` claim.
    pub subject: String,
    /// The `roles` claim.
    pub roles: Vec<String>,
    /// The `client_id` claim; present when the caller is a service.
    pub client_id: Option<String>,
    /// The `jti` claim.
    pub token_id: String,
    /// The `exp` claim, seconds since the Unix epoch.
    pub expires_at: i64,
    /// Every claim of the token.
    pub claims: AccessClaims,
}

impl Principal {
    /// Builds the principal of verified claims.
    pub fn from_claims(claims: AccessClaims) -> Self {
        Self {
            subject: claims.sub.clone(),
            roles: claims.roles.clone(),
            client_id: claims.client_id.clone(),
            token_id: claims.jti.clone(),
            expires_at: claims.exp,
            claims,
        }
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// `Ok` when the caller holds `role`, else [`AuthError::Forbidden`] (403).
    pub fn require_role(&self, role: &str) -> Result<(), AuthError> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                role: role.to_owned(),
            })
        }
    }

    /// Whether the caller is a service (a client-credentials token) rather than a user.
    pub fn is_service(&self) -> bool {
        self.client_id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audience_is_read_from_a_string_or_an_array() {
        let one: Audience = serde_json::from_str(r#""profile""#).unwrap();
        let many: Audience = serde_json::from_str(r#"["profile","logging"]"#).unwrap();
        assert_eq!(one, Audience::single("profile"));
        assert_eq!(many.0, ["profile", "logging"]);
        assert!(serde_json::from_str::<Audience>("42").is_err());
    }

    #[test]
    fn a_single_audience_is_written_as_a_string_and_several_as_an_array() {
        let one = serde_json::to_value(Audience::single("profile")).unwrap();
        let many = serde_json::to_value(Audience(vec!["a".into(), "b".into()])).unwrap();
        assert_eq!(one, serde_json::json!("profile"));
        assert_eq!(many, serde_json::json!(["a", "b"]));
    }

    #[test]
    fn client_id_is_left_out_of_user_tokens_and_roles_default_to_none() {
        let claims = AccessClaims {
            iss: "https://id".into(),
            sub: "u1".into(),
            aud: Audience::single("api"),
            exp: 2,
            iat: 1,
            nbf: 1,
            jti: "t1".into(),
            roles: vec![],
            client_id: None,
        };
        let json = serde_json::to_value(&claims).unwrap();
        assert!(json.get("client_id").is_none());
        let mut without_roles = json.clone();
        without_roles.as_object_mut().unwrap().remove("roles");
        let back: AccessClaims = serde_json::from_value(without_roles).unwrap();
        assert_eq!(back, claims);
    }

    #[test]
    fn require_role_refuses_a_caller_without_the_role() {
        let principal = Principal::from_claims(AccessClaims {
            iss: "i".into(),
            sub: "u1".into(),
            aud: Audience::single("api"),
            exp: 2,
            iat: 1,
            nbf: 1,
            jti: "t1".into(),
            roles: vec!["user".into()],
            client_id: Some("svc".into()),
        });
        assert!(principal.require_role("user").is_ok());
        assert!(matches!(
            principal.require_role("admin"),
            Err(AuthError::Forbidden { role }) if role == "admin"
        ));
        assert!(principal.is_service());
    }
}
