//! The verifier: a lock-free cache of pinned keys, refreshed in the background and, once per
//! interval at most, when a token names a key it does not know.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use service_kit::{Clock, SystemClock};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cache::VerifiedTokens;
use crate::claims::Principal;
use crate::config::VerifierConfig;
use crate::error::{KeySourceError, VerifyError};
use crate::keys::KeyCache;
use crate::source::KeySource;
use crate::token::UnverifiedToken;

/// First retry delay after a failed fetch; doubled on every further failure.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Longest delay between retries while fetches fail, so keys come back within half a
/// minute of identity recovering (unless the refresh interval is even shorter).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Checks access tokens against the keys of a [`KeySource`].
///
/// Verification reads the key cache through an `ArcSwap`: no lock on the hot path. Key
/// fetches happen in [`Verifier::spawn_refresh`] and, for an unknown `kid`, in a
/// single-flight, rate-limited refetch.
pub struct Verifier {
    config: VerifierConfig,
    source: Arc<dyn KeySource>,
    clock: Arc<dyn Clock>,
    keys: Arc<ArcSwapOption<KeyCache>>,
    verified: VerifiedTokens,
    /// When the last unknown-`kid` refetch started; the mutex makes refetches single-flight.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier with no keys yet; call [`Verifier::spawn_refresh`] (or `refresh`) to load.
    pub fn new(config: VerifierConfig, source: Arc<dyn KeySource>) -> Arc<Self> {
        Self::with_clock(config, source, Arc::new(SystemClock))
    }

    /// As [`Verifier::new`], reading the time for `exp`/`nbf`/`iat` from `clock`.
    pub fn with_clock(
        config: VerifierConfig,
        source: Arc<dyn KeySource>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            verified: VerifiedTokens::new(config.verified_cache_entries),
            config,
            source,
            clock,
            keys: Arc::new(ArcSwapOption::empty()),
            last_refetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Whether a key set has been loaded, i.e. tokens can be checked.
    pub fn is_ready(&self) -> bool {
        self.keys.load().is_some()
    }

    /// Registers the `token_keys` readiness check: passes once a key set is loaded
    /// (until then protected routes answer 503, so the pod should not receive traffic).
    pub fn add_readiness_check(self: &Arc<Self>, readiness: &service_kit::Readiness) {
        let verifier = Arc::clone(self);
        readiness.add_flag("token_keys", "identity's JWKS not loaded yet", move || {
            verifier.is_ready()
        });
    }

    /// Fetches the key set now and swaps it in. On failure the previous keys stay.
    pub async fn refresh(&self) -> Result<(), KeySourceError> {
        fetch_and_install(self.source.as_ref(), &self.keys).await
    }

    /// Loads the keys in the background: at once, retried with exponential backoff until
    /// it succeeds, then every `refresh_interval` (failures retried sooner). Stops when
    /// `shutdown` is cancelled.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let verifier = Arc::clone(self);
        tokio::spawn(async move {
            let mut delay = Duration::ZERO;
            let mut failures: u32 = 0;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                match verifier.refresh().await {
                    Ok(()) => {
                        failures = 0;
                        delay = verifier.config.refresh_interval;
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        delay = retry_delay(failures).min(verifier.config.refresh_interval);
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            ready = verifier.is_ready(),
                            "JWKS refresh failed"
                        );
                    }
                }
            }
        })
    }

    /// Verifies `token` (RFC 8725 / RFC 9068) and returns the caller it authenticates.
    ///
    /// A token verified before is answered from the cache while it has not expired and
    /// the key that verified it is still published.
    pub async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        if token.len() > self.config.max_token_bytes {
            return Err(VerifyError::TooLarge);
        }
        let now = self.clock.now().unix_timestamp();
        let keys = self.keys.load();
        if let Some(keys) = keys.as_ref()
            && let Some(principal) = self.verified.get(token, now, |kid| keys.get(kid).is_some())
        {
            return Ok(principal);
        }
        drop(keys);
        let parsed = UnverifiedToken::parse(token, self.config.max_token_bytes)?;
        let outcome = if let Some(outcome) = self.verify_with_cached_key(&parsed) {
            outcome
        } else {
            self.refetch_for_unknown_kid().await;
            self.verify_with_cached_key(&parsed).unwrap_or_else(|| {
                Err(if self.is_ready() {
                    VerifyError::UnknownKey
                } else {
                    VerifyError::KeysUnavailable
                })
            })
        };
        if let Ok(principal) = &outcome {
            let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(i64::MAX);
            let expires_at = principal.expires_at.saturating_add(leeway);
            self.verified
                .insert(token, parsed.kid(), principal, expires_at, now);
        }
        outcome
    }

    /// `None` when the `kid` is not in the cache (or nothing is cached).
    fn verify_with_cached_key(
        &self,
        token: &UnverifiedToken<'_>,
    ) -> Option<Result<Principal, VerifyError>> {
        let keys = self.keys.load();
        let key = keys.as_ref()?.get(token.kid())?;
        Some(token.verify_signature(key).and_then(|()| {
            let now = self.clock.now().unix_timestamp();
            token.claims(&self.config, now).map(Principal::from_claims)
        }))
    }

    /// Fetches the key set once for all callers that met an unknown `kid` together, and
    /// at most once per `min_refetch_interval`.
    async fn refetch_for_unknown_kid(&self) {
        let seen = self.keys.load_full();
        let mut last = self.last_refetch.lock().await;
        let current = self.keys.load_full();
        let replaced_meanwhile = match (&seen, &current) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (None, None) => false,
            _ => true,
        };
        if replaced_meanwhile {
            // Another caller (or the background refresh) just fetched: look there first.
            return;
        }
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.config.min_refetch_interval) {
            return;
        }
        *last = Some(now);
        // Spawned so that a caller giving up (client disconnect) does not abort the fetch
        // the other waiters are counting on.
        let source = Arc::clone(&self.source);
        let keys = Arc::clone(&self.keys);
        let fetch = tokio::spawn(async move { fetch_and_install(source.as_ref(), &keys).await });
        let outcome = fetch.await.unwrap_or(Err(KeySourceError::Interrupted));
        if let Err(error) = outcome {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "JWKS refetch for an unknown kid failed"
            );
        }
    }
}

async fn fetch_and_install(
    source: &dyn KeySource,
    keys: &ArcSwapOption<KeyCache>,
) -> Result<(), KeySourceError> {
    let set = source.fetch().await?;
    let cache = KeyCache::from_jwks(&set)?;
    tracing::debug!(keys = cache.len(), "JWKS loaded");
    keys.store(Some(Arc::new(cache)));
    Ok(())
}

fn retry_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    FIRST_RETRY_DELAY
        .saturating_mul(1 << exponent)
        .min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_half_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_millis(200));
        assert_eq!(retry_delay(2), Duration::from_millis(400));
        assert_eq!(retry_delay(4), Duration::from_millis(1600));
        assert_eq!(retry_delay(40), Duration::from_secs(30));
    }
}
