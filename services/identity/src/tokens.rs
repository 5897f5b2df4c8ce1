//! Access tokens (RFC 9068 JWTs signed with the active key) and opaque refresh tokens.

use std::sync::Arc;
use std::time::Duration;

use service_kit::Clock;
use tessera_auth::{AccessClaims, Audience};

use crate::keys::KeyManager;
use crate::secrets;

/// Prefix of refresh tokens, so leaked ones are recognisable.
pub const REFRESH_PREFIX: &str = "tsr_";

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub jti: String,
    pub kid: String,
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// No active signing key yet (keyset not loaded).
    #[error("no signing key is loaded")]
    NoKey,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(#[from] tessera_keys::KeyError),
}

/// Signs access tokens.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    pub keys: Arc<KeyManager>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub access_ttl: Duration,
    pub clock: Arc<dyn Clock>,
}

impl TokenIssuer {
    /// A token for `subject` with `roles` (and `client_id` for service tokens).
    pub fn issue(
        &self,
        subject: &str,
        roles: &[String],
        client_id: Option<&str>,
    ) -> Result<Issued, IssueError> {
        let signer = self.keys.signer().ok_or(IssueError::NoKey)?;
        let now = self.clock.now().unix_timestamp();
        let ttl = self.access_ttl.as_secs();
        let jti = uuid::Uuid::now_v7().to_string();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: Audience(self.audiences.clone()),
            exp: now + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
            iat: now,
            nbf: now,
            jti: jti.clone(),
            roles: roles.to_vec(),
            client_id: client_id.map(str::to_owned),
        };
        let access_token = signer.sign(&claims)?;
        Ok(Issued {
            access_token,
            expires_in: ttl,
            jti,
            kid: signer.kid().to_owned(),
        })
    }
}

/// A new refresh token and the hash stored for it.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let token = secrets::random_token(REFRESH_PREFIX);
    let hash = secrets::sha256(&token);
    (token, hash)
}
