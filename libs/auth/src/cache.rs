//! Tokens already verified, kept until they expire so a client's next requests cost a
//! hash lookup instead of a signature check.
//!
//! Clients reuse an access token for its whole lifetime (15 minutes by default), so a
//! verifier sees the same few thousand tokens over and over; an ES256 check costs tens of
//! microseconds, a lookup well under one. Only tokens that passed every check are kept,
//! keyed by the whole token (a hit means the very same bytes were verified before), with
//! the `kid` that verified them: an entry is used only while that key is still published,
//! so a key withdrawn from the JWKS stops its tokens at the next refresh, cached or not.
//! Forged tokens are never stored, so a flood of them cannot push good entries out.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};

use crate::claims::Principal;

/// Number of independently locked parts, so concurrent requests rarely wait for each
/// other; a power of two keeps the shard choice a mask.
const SHARDS: usize = 16;

/// A verified token's caller and what decides whether it may still be used.
struct Entry {
    principal: Principal,
    /// The key that verified the token.
    kid: Box<str>,
    /// First Unix second at which the token is no longer accepted (`exp` plus leeway).
    expires_at: i64,
}

/// One independently locked part of the cache.
type Shard = Mutex<HashMap<Box<str>, Entry>>;

/// A bounded map from token to verified caller.
pub(crate) struct VerifiedTokens {
    shards: Box<[Shard]>,
    per_shard: usize,
    /// Randomly seeded (`SipHash`): tokens are attacker-chosen, so bucket collisions must
    /// not be predictable.
    hasher: RandomState,
}

impl VerifiedTokens {
    /// A cache of at most `capacity` tokens (rounded up to a multiple of the shard count);
    /// `0` keeps nothing.
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(HashMap::with_capacity(per_shard.min(1024))))
            .collect();
        Self {
            shards,
            per_shard,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, token: &str) -> &Shard {
        // Truncation is fine: only the low bits choose the shard.
        #[allow(clippy::cast_possible_truncation)]
        let index = self.hasher.hash_one(token) as usize & (SHARDS - 1);
        &self.shards[index]
    }

    /// The caller `token` authenticates, when it was verified before, has not expired at
    /// `now`, and `is_published` still holds for the key that verified it.
    pub(crate) fn get(
        &self,
        token: &str,
        now: i64,
        is_published: impl FnOnce(&str) -> bool,
    ) -> Option<Principal> {
        if self.per_shard == 0 {
            return None;
        }
        let mut shard = self
            .shard(token)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = shard.get(token)?;
        if now >= entry.expires_at {
            shard.remove(token);
            return None;
        }
        is_published(&entry.kid).then(|| entry.principal.clone())
    }

    /// Remembers that `token`, verified with `kid`, authenticates `principal` until
    /// `expires_at`. When the shard is full, expired entries go first, then any one entry.
    pub(crate) fn insert(
        &self,
        token: &str,
        kid: &str,
        principal: &Principal,
        expires_at: i64,
        now: i64,
    ) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self
            .shard(token)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(token) {
            shard.retain(|_, entry| now < entry.expires_at);
            if shard.len() >= self.per_shard {
                let victim = shard.keys().next().cloned();
                if let Some(victim) = victim {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(
            token.into(),
            Entry {
                principal: principal.clone(),
                kid: kid.into(),
                expires_at,
            },
        );
    }

    /// Number of tokens held (tests and metrics).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{AccessClaims, Audience};

    fn principal(sub: &str) -> Principal {
        Principal::from_claims(AccessClaims {
            iss: "https://id.test".into(),
            sub: sub.into(),
            aud: Audience::single("gw"),
            exp: 100,
            iat: 0,
            nbf: 0,
            jti: format!("jti-{sub}"),
            roles: vec!["user".into()],
            client_id: None,
        })
    }

    #[test]
    fn a_cached_token_is_returned_until_it_expires() {
        let cache = VerifiedTokens::new(64);
        cache.insert("t1", "k1", &principal("u1"), 100, 0);
        assert_eq!(cache.get("t1", 99, |_| true).unwrap().subject, "u1");
        assert!(cache.get("t1", 100, |_| true).is_none());
        assert!(cache.get("t2", 50, |_| true).is_none());
        assert_eq!(cache.len(), 0, "the expired entry was dropped on lookup");
    }

    #[test]
    fn a_token_whose_key_is_no_longer_published_is_not_returned() {
        let cache = VerifiedTokens::new(64);
        cache.insert("t1", "k1", &principal("u1"), 100, 0);
        assert!(cache.get("t1", 1, |kid| kid == "k2").is_none());
        assert!(cache.get("t1", 1, |kid| kid == "k1").is_some());
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = VerifiedTokens::new(SHARDS * 2);
        for i in 0..1000 {
            cache.insert(&format!("token-{i}"), "k1", &principal("u"), 100, 0);
        }
        assert!(cache.len() <= SHARDS * 2, "{} entries", cache.len());
        assert!(cache.get("token-999", 1, |_| true).is_some(), "newest kept");
    }

    #[test]
    fn expired_entries_make_room_before_a_live_one_is_evicted() {
        let cache = VerifiedTokens::new(SHARDS * 3);
        cache.insert("keep", "k1", &principal("u1"), 10_000, 0);
        // A stream of short-lived tokens, each expired by the time the next arrives: the
        // shard holding "keep" only ever fills with expired entries, which go first.
        for now in 0..2000 {
            cache.insert(&format!("brief-{now}"), "k1", &principal("u"), now + 1, now);
        }
        assert!(cache.get("keep", 2000, |_| true).is_some());
    }

    #[test]
    fn a_zero_capacity_cache_keeps_nothing() {
        let cache = VerifiedTokens::new(0);
        cache.insert("t1", "k1", &principal("u1"), 100, 0);
        assert!(cache.get("t1", 1, |_| true).is_none());
    }
}
