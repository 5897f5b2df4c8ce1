//! Login throttling: at most N login attempts per account and per client address in a
//! window. An attempt takes its slot *before* the password is checked, under one lock, so
//! parallel attempts cannot slip past the limit (the ZITADEL GHSA-7h8m-vrxx-vr4m race);
//! a successful login gives the account its slots back.
//!
//! Counters live in this process: with several replicas each enforces its own limit.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

/// Entries kept before expired ones are swept, bounding memory under a spray of addresses.
const SWEEP_THRESHOLD: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: OffsetDateTime,
    attempts: u32,
}

/// Attempt counters keyed by account or address.
#[derive(Debug)]
pub struct LoginThrottle {
    max_attempts: u32,
    window: Duration,
    counters: Mutex<HashMap<String, Window>>,
}

/// The caller must wait this long before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Seconds until the window ends.
    pub retry_after_secs: u64,
}

impl LoginThrottle {
    /// `max_attempts` failures allowed per key per `window`.
    pub fn new(max_attempts: u32, window: Duration) -> Self {
        Self {
            max_attempts,
            window,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt slot for every key, or none if any key is exhausted.
    pub fn try_acquire(&self, keys: &[&str], now: OffsetDateTime) -> Result<(), Locked> {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        if counters.len() > SWEEP_THRESHOLD {
            let window = self.window;
            counters.retain(|_, w| now - w.started < window);
        }
        for key in keys {
            if let Some(w) = counters.get(*key)
                && now - w.started < self.window
                && w.attempts >= self.max_attempts
            {
                let left = self.window - (now - w.started);
                return Err(Locked {
                    retry_after_secs: left.whole_seconds().max(1).unsigned_abs(),
                });
            }
        }
        for key in keys {
            let entry = counters.entry((*key).to_owned()).or_insert(Window {
                started: now,
                attempts: 0,
            });
            if now - entry.started >= self.window {
                *entry = Window {
                    started: now,
                    attempts: 0,
                };
            }
            entry.attempts += 1;
        }
        Ok(())
    }

    /// Forgets `key`'s attempts (after a successful login).
    pub fn reset(&self, key: &str) {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_until_the_window_passes_and_success_resets_it() {
        let throttle = LoginThrottle::new(2, Duration::from_secs(60));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert!(throttle.try_acquire(&["a"], t0).is_ok());
        assert!(throttle.try_acquire(&["a"], t0).is_ok());
        assert_eq!(
            throttle.try_acquire(&["a"], t0),
            Err(Locked {
                retry_after_secs: 60
            })
        );
        assert!(
            throttle.try_acquire(&["b"], t0).is_ok(),
            "other keys are independent"
        );
        assert!(
            throttle
                .try_acquire(&["a"], t0 + Duration::from_secs(61))
                .is_ok()
        );
        throttle.reset("a");
        assert!(
            throttle
                .try_acquire(&["a"], t0 + Duration::from_secs(61))
                .is_ok()
        );
    }

    #[test]
    fn an_exhausted_address_blocks_attempts_on_any_account() {
        let throttle = LoginThrottle::new(1, Duration::from_secs(60));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert!(throttle.try_acquire(&["acct:x", "ip:1"], t0).is_ok());
        assert!(throttle.try_acquire(&["acct:y", "ip:1"], t0).is_err());
    }
}
