//! The rotation policy: algorithm for new keys and the three timings of the key life cycle.

use std::time::Duration;

use crate::Algorithm;

/// How keys are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Algorithm of newly generated keys. Existing keys keep theirs until they retire.
    pub algorithm: Algorithm,
    /// How long a key signs before the next one takes over.
    pub rotation_interval: Duration,
    /// How long a new key is published before it signs: at least the JWKS cache
    /// lifetime of verifiers plus the time the keyset takes to reach every signer.
    pub pre_publication: Duration,
    /// How long a key stays published after it stopped signing: at least the longest
    /// token lifetime plus the JWKS cache lifetime plus clock leeway, plus the time the
    /// demotion takes to reach every signer (which signs with the key until then).
    pub retirement: Duration,
}

/// Why a key policy was refused. Messages name the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A duration is zero, which would publish, sign or retire keys without any delay.
    #[error("key policy: {field} must be greater than zero")]
    Zero {
        /// The field at fault.
        field: &'static str,
    },
    /// Pre-publication is not shorter than the interval, so keys would be due for
    /// replacement before they could ever sign.
    #[error(
        "key policy: pre_publication ({pre_publication:?}) must be shorter than rotation_interval ({rotation_interval:?})"
    )]
    PrePublicationTooLong {
        /// The pre-publication given.
        pre_publication: Duration,
        /// The rotation interval given.
        rotation_interval: Duration,
    },
}

impl KeyPolicy {
    /// Checks that every duration is positive and that pre-publication fits in the interval.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (field, value) in [
            ("rotation_interval", self.rotation_interval),
            ("pre_publication", self.pre_publication),
            ("retirement", self.retirement),
        ] {
            if value.is_zero() {
                return Err(PolicyError::Zero { field });
            }
        }
        if self.pre_publication >= self.rotation_interval {
            return Err(PolicyError::PrePublicationTooLong {
                pre_publication: self.pre_publication,
                rotation_interval: self.rotation_interval,
            });
        }
        Ok(())
    }

    /// A policy derived from the facts that bound it (DESIGN.md §4):
    /// `pre_publication = jwks_cache + propagation` and
    /// `retirement = token_lifetime + jwks_cache + propagation + leeway`.
    ///
    /// `propagation` is how long a keyset change takes to reach every signer and JWKS
    /// server (for a mounted Secret, the kubelet sync delay, about a minute). It counts
    /// in the retirement too: a signer that has not seen the promotion yet still signs
    /// with the retiring key, and the removal can reach the JWKS servers sooner than the
    /// promotion reached that signer.
    pub fn derived(
        algorithm: Algorithm,
        rotation_interval: Duration,
        token_lifetime: Duration,
        jwks_cache: Duration,
        propagation: Duration,
        leeway: Duration,
    ) -> Self {
        Self {
            algorithm,
            rotation_interval,
            pre_publication: jwks_cache.saturating_add(propagation),
            retirement: token_lifetime
                .saturating_add(jwks_cache)
                .saturating_add(propagation)
                .saturating_add(leeway),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn derived_policy_adds_cache_propagation_lifetime_and_leeway() {
        let policy = KeyPolicy::derived(
            Algorithm::ES256,
            24 * 60 * MINUTE,
            15 * MINUTE,
            5 * MINUTE,
            MINUTE,
            MINUTE,
        );
        assert_eq!(policy.algorithm, Algorithm::ES256);
        assert_eq!(policy.rotation_interval, 24 * 60 * MINUTE);
        assert_eq!(policy.pre_publication, 6 * MINUTE);
        assert_eq!(policy.retirement, 22 * MINUTE);
        assert_eq!(policy.validate(), Ok(()));
    }
}
