//! Passwords: the policy new passwords must meet, and Argon2id hashing on a bounded pool
//! of blocking threads (never on the async workers, which would stall every request).

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Shortest password accepted (NIST SP 800-63B allows 8; Tessera asks for 12).
pub const MIN_LENGTH: usize = 12;
/// Longest password accepted, so hashing cost stays bounded.
pub const MAX_LENGTH: usize = 256;

/// Common passwords of `MIN_LENGTH` or more characters, one per line, lowercased.
const COMMON: &str = include_str!("../data/common-passwords.txt");

/// A rule a new password broke; the `code` goes into the 400 problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// Fewer than 12 characters.
    #[error("the password must have at least 12 characters")]
    TooShort,
    /// More than 256 characters.
    #[error("the password must have at most 256 characters")]
    TooLong,
    /// On the list of commonly used passwords.
    #[error("the password is too common; choose another")]
    Common,
}

impl PolicyViolation {
    /// Stable rule name for clients.
    pub fn rule(self) -> &'static str {
        match self {
            Self::TooShort => "min_length",
            Self::TooLong => "max_length",
            Self::Common => "common_password",
        }
    }
}

/// Checks a new password against the policy.
pub fn check_policy(password: &str) -> Result<(), PolicyViolation> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(PolicyViolation::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(PolicyViolation::TooLong);
    }
    let lowered = password.to_lowercase();
    if COMMON
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|common| common == lowered)
    {
        return Err(PolicyViolation::Common);
    }
    Ok(())
}

/// Hashing failed for a reason other than a wrong password.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The Argon2 implementation refused the input or parameters.
    #[error("argon2: {0}")]
    Argon2(String),
    /// The blocking task panicked or was cancelled.
    #[error("password hashing task failed")]
    Task,
}

/// Argon2id with fixed parameters, at most `concurrency` hashes at a time.
#[derive(Debug, Clone)]
pub struct PasswordHashing {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified when an email is unknown so that unknown
    /// accounts take as long to refuse as wrong passwords.
    dummy_hash: Arc<str>,
}

impl PasswordHashing {
    /// Builds the pool; fails when the parameters are invalid.
    pub fn new(memory_kib: u32, iterations: u32, concurrency: usize) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| HashError::Argon2(e.to_string()))?;
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        } else {
            concurrency
        };
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let dummy_hash = hasher
            .hash_password(uuid::Uuid::new_v4().to_string().as_bytes())
            .map_err(|e| HashError::Argon2(e.to_string()))?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            dummy_hash: dummy_hash.into(),
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        let argon2 = self.argon2();
        self.run(move || {
            argon2
                .hash_password(password.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Argon2(e.to_string()))
        })
        .await?
    }

    /// Whether `password` matches `hash`. With `hash = None` (unknown account) a dummy hash
    /// is checked so the answer takes the same time, and the result is always false.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, HashError> {
        let argon2 = self.argon2();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matched = self
            .run(move || {
                argon2
                    .verify_password(password.expose_secret().as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(known && matched)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Task)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| HashError::Task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_and_common_passwords_break_named_rules() {
        assert_eq!(check_policy("short-pw"), Err(PolicyViolation::TooShort));
        assert_eq!(
            check_policy(&"x".repeat(257)),
            Err(PolicyViolation::TooLong)
        );
        assert_eq!(check_policy("Q1W2E3R4T5Y6"), Err(PolicyViolation::Common));
        assert_eq!(check_policy("correct horse battery staple"), Ok(()));
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hashing = PasswordHashing::new(64, 1, 2).expect("params");
        let hash = hashing
            .hash(SecretString::from("a long enough password"))
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        let ok = hashing
            .verify("a long enough password".into(), Some(hash.clone()))
            .await;
        let wrong = hashing
            .verify("another long password".into(), Some(hash))
            .await;
        let unknown = hashing.verify("a long enough password".into(), None).await;
        assert_eq!(
            (ok.ok(), wrong.ok(), unknown.ok()),
            (Some(true), Some(false), Some(false))
        );
    }
}
