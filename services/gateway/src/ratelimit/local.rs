//! The in-memory limiter: GCRA state in sharded maps, bounded in size, swept of expired
//! keys. One gateway replica's view only: N replicas with local limits allow N times the
//! policy, which is what [`super::RedisLimiter`] is for.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, ready};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use service_kit::{CancellationToken, Clock};
use tokio::time::MissedTickBehavior;

use super::gcra::{Gcra, NANOS};
use super::{Decision, Limiter, LimiterError, RatePolicy};

/// Shards: enough that 2–16 worker threads rarely wait on one another's lock, few enough
/// that a sweep (one lock at a time) and `len` stay cheap.
const MAX_SHARDS: usize = 64;
/// Shortest sweep period; `tokio::time::interval` panics on zero.
const MIN_SWEEP_EVERY: Duration = Duration::from_millis(1);

/// The in-memory GCRA limiter.
///
/// Keys are stored as a 64-bit keyed hash (`SipHash` with a per-process random key) of
/// (policy name, key), mapped to their TAT in nanoseconds since 1970. Each entry costs the
/// same whatever the key's length and a check allocates nothing; two keys collide with
/// odds around `n² / 2^65` (1 in 37 million at a million keys), which merely makes them
/// share a budget, and clients cannot aim for a collision without the random key.
///
/// # Bounded size
///
/// At most `max_keys` entries, split evenly across the shards (each shard enforces its
/// share, so no global counter is contended on the request path; a shard can fill a little
/// before the others). When a new key arrives at a full shard, the shard's expired entries
/// (TAT passed: their budget is full again, so forgetting them changes no decision) are
/// evicted first. If the shard is still full, the new key is **refused** — a 429 whose
/// `Retry-After` is when the shard's next entry may expire — and counted in
/// [`full_refusals`](Self::full_refusals). Keys already tracked keep being served normally.
/// Why refuse rather than allow untracked keys: the store fills only when more than
/// `max_keys` keys are active within their refill window, which is an attack (or a
/// `max_keys` far too small); letting new keys through unthrottled would hand such an
/// attacker unlimited throughput to the upstreams, while refusing bounds both memory and
/// load and leaves established clients unaffected.
pub struct LocalLimiter {
    shards: Box<[Shard]>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
    max_keys: usize,
    full_refusals: AtomicU64,
}

/// One shard, alone on its cache lines so neighbouring locks do not contend.
#[repr(align(128))]
struct Shard {
    state: Mutex<ShardState>,
    capacity: usize,
}

struct ShardState {
    /// Key hash → TAT (nanoseconds since 1970).
    tats: HashMap<u64, u64, BuildHasherDefault<Prehashed>>,
    /// No entry's TAT is earlier than this: a full shard with nothing expired skips the
    /// eviction scan until then, so a flood of new keys costs O(1) each, not O(shard).
    /// Holds because TATs only grow and inserts lower it.
    earliest_expiry: u64,
}

impl LocalLimiter {
    /// A limiter holding at most `max_keys` (policy, key) entries (0 is taken as 1), using
    /// `clock` for time.
    pub fn new(max_keys: usize, clock: Arc<dyn Clock>) -> Arc<Self> {
        let max_keys = max_keys.max(1);
        let count = max_keys.min(MAX_SHARDS);
        let shards = (0..count)
            .map(|i| Shard {
                state: Mutex::new(ShardState {
                    tats: HashMap::default(),
                    earliest_expiry: u64::MAX,
                }),
                // Spread the remainder so the capacities add up to `max_keys` exactly.
                capacity: max_keys / count + usize::from(i < max_keys % count),
            })
            .collect();
        Arc::new(Self {
            shards,
            hasher: RandomState::new(),
            clock,
            max_keys,
            full_refusals: AtomicU64::new(0),
        })
    }

    /// Entries currently held, expired ones included until swept or evicted.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().tats.len()).sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New keys refused because their shard was full of live entries, since start.
    pub fn full_refusals(&self) -> u64 {
        self.full_refusals.load(Ordering::Relaxed)
    }

    /// Removes every entry whose TAT has passed; returns how many. Locks one shard at a
    /// time, so requests wait at most for one shard's scan.
    pub fn sweep(&self) -> usize {
        let now = self.now();
        self.shards
            .iter()
            .map(|s| s.lock().evict_expired(now))
            .sum()
    }

    /// Sweeps every `every` until `shutdown` is cancelled or the limiter is dropped, and
    /// warns when new keys were refused for lack of room since the previous sweep.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration, shutdown: CancellationToken) {
        // A weak reference: the sweeper must not keep a replaced limiter alive.
        let limiter = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(MIN_SWEEP_EVERY));
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // The first tick completes at once; there is nothing to sweep at start.
            ticks.tick().await;
            let mut refusals_seen = 0;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let Some(limiter) = limiter.upgrade() else {
                    break;
                };
                let removed = limiter.sweep();
                let refusals = limiter.full_refusals();
                if refusals > refusals_seen {
                    tracing::warn!(
                        refused = refusals - refusals_seen,
                        max_keys = limiter.max_keys,
                        "rate-limit store full: new keys were refused (attack, or max_keys too small)"
                    );
                    refusals_seen = refusals;
                }
                tracing::debug!(removed, "rate-limit store swept");
            }
        });
    }

    fn decide(&self, key: &str, policy: &RatePolicy) -> Result<Decision, LimiterError> {
        let gcra = Gcra::new(policy, NANOS).map_err(|reason| LimiterError::InvalidPolicy {
            name: policy.name.clone(),
            reason,
        })?;
        let now = self.now();
        let hash = self.hash(&policy.name, key);
        let shard = self.shard(hash);
        let mut state = shard.lock();
        if let Some(tat) = state.tats.get_mut(&hash) {
            let (decision, new_tat) = gcra.check(Some(*tat), now);
            if let Some(new_tat) = new_tat {
                *tat = new_tat;
            }
            return Ok(decision);
        }
        let (decision, new_tat) = gcra.check(None, now);
        let Some(new_tat) = new_tat else {
            return Ok(decision);
        };
        if state.tats.len() >= shard.capacity && now >= state.earliest_expiry {
            state.evict_expired(now);
        }
        if state.tats.len() >= shard.capacity {
            let wait = Duration::from_nanos(state.earliest_expiry.saturating_sub(now));
            drop(state);
            self.full_refusals.fetch_add(1, Ordering::Relaxed);
            return Ok(Decision {
                allowed: false,
                limit: policy.burst,
                remaining: 0,
                reset_after: wait,
                retry_after: Some(wait),
            });
        }
        state.tats.insert(hash, new_tat);
        state.earliest_expiry = state.earliest_expiry.min(new_tat);
        Ok(decision)
    }

    fn now(&self) -> u64 {
        // Before 1970 only in a broken clock; after 2554 not at all.
        u64::try_from(self.clock.now().unix_timestamp_nanos().max(0)).unwrap_or(u64::MAX)
    }

    fn hash(&self, policy: &str, key: &str) -> u64 {
        // `str` hashes with a terminator, so ("ab", "c") and ("a", "bc") differ.
        let mut hasher = self.hasher.build_hasher();
        policy.hash(&mut hasher);
        key.hash(&mut hasher);
        hasher.finish()
    }

    fn shard(&self, hash: u64) -> &Shard {
        // Bits 32.. pick the shard: the maps use the low bits (bucket) and the top 7 bits
        // (control byte) of the same hash, which must stay varied within a shard.
        let count = self.shards.len() as u64;
        let index = usize::try_from((hash >> 32) % count).unwrap_or(0);
        &self.shards[index]
    }
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, ShardState> {
        // A panic cannot leave a map of integers inconsistent; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ShardState {
    /// Drops entries whose TAT has passed and recomputes `earliest_expiry`.
    fn evict_expired(&mut self, now: u64) -> usize {
        let before = self.tats.len();
        let mut earliest = u64::MAX;
        self.tats.retain(|_, tat| {
            let live = *tat > now;
            if live {
                earliest = earliest.min(*tat);
            }
            live
        });
        self.earliest_expiry = earliest;
        before - self.tats.len()
    }
}

impl Limiter for LocalLimiter {
    fn check<'a>(
        &'a self,
        key: &'a str,
        policy: &'a RatePolicy,
    ) -> Pin<Box<dyn Future<Output = Result<Decision, LimiterError>> + Send + 'a>> {
        Box::pin(ready(self.decide(key, policy)))
    }
}

impl fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards.len())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// A hasher for keys that already are `SipHash` outputs: hashing them again is wasted work.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashMap<u64, _>`; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use service_kit::SystemClock;

    use super::*;

    #[test]
    fn shard_capacities_add_up_to_max_keys() {
        for max_keys in [1, 5, 63, 64, 65, 100, 1_000, 1_000_003] {
            let limiter = LocalLimiter::new(max_keys, Arc::new(SystemClock));
            let total: usize = limiter.shards.iter().map(|s| s.capacity).sum();
            assert_eq!(total, max_keys);
            assert!(limiter.shards.len() <= MAX_SHARDS);
            assert!(limiter.shards.iter().all(|s| s.capacity >= 1));
        }
    }

    #[test]
    fn zero_max_keys_is_taken_as_one() {
        let limiter = LocalLimiter::new(0, Arc::new(SystemClock));
        assert_eq!(limiter.shards.iter().map(|s| s.capacity).sum::<usize>(), 1);
    }

    #[test]
    fn the_same_key_under_two_policies_hashes_apart_and_splits_no_words() {
        let limiter = LocalLimiter::new(10, Arc::new(SystemClock));
        assert_ne!(limiter.hash("a", "b"), limiter.hash("b", "a"));
        assert_ne!(limiter.hash("ab", "c"), limiter.hash("a", "bc"));
        assert_eq!(limiter.hash("a", "b"), limiter.hash("a", "b"));
    }
}
