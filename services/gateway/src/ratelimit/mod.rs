//! Throttling: GCRA rate limits per key, kept in memory ([`LocalLimiter`]) or in Redis
//! ([`RedisLimiter`]) so that several gateway replicas share one budget.
//!
//! A [`RatePolicy`] allows `requests` per `period_secs` with bursts of up to `burst`
//! requests at once. The gateway asks a [`Limiter`] for a [`Decision`] on every request and
//! writes it into the response with [`apply_headers`] (429 with `Retry-After` when refused).
//!
//! # Failing open
//!
//! A [`LimiterError`] means the limiter could not decide (Redis down or slow, a policy the
//! routes file should have refused). The gateway then **lets the request through**, logs the
//! error and counts it: throttling protects upstreams from excess, and a broken limiter must
//! not turn into a full outage of every route. A limiter that refuses is never an error: a
//! full [`LocalLimiter`] store answers with a refusing [`Decision`], not a [`LimiterError`],
//! so an attacker cannot switch throttling off by filling it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

mod gcra;
mod headers;
mod local;
mod redis;

pub use self::headers::apply_headers;
pub use self::local::LocalLimiter;
pub use self::redis::{KEY_PREFIX, RedisLimiter};

/// Longest policy name: it appears in response headers and Redis keys.
const MAX_NAME_LEN: usize = 64;

/// A rate-limit policy: `requests` per `period_secs`, with bursts of up to `burst` requests
/// at once (GCRA). Policies are identified by `name`: two routes naming the same policy
/// share its budget per key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatePolicy {
    /// `[a-z0-9_-]{1,64}`; shown to clients in the `RateLimit` headers.
    pub name: String,
    /// Requests allowed per period once a burst is spent (the steady rate).
    pub requests: u32,
    /// The period, in seconds.
    pub period_secs: u32,
    /// Most requests allowed at once by an idle key.
    pub burst: u32,
}

impl RatePolicy {
    /// Checks what the limiters rely on: `requests`, `period_secs` and `burst` at least 1,
    /// the name `[a-z0-9_-]{1,64}`, at most a million requests a second (an emission
    /// interval of at least 1 µs, the resolution of the Redis backend) and a burst that
    /// refills within 366 days (so Redis's Lua numbers, which are doubles, stay exact).
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(format!(
                "rate-limit policy name {:?} must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, _ and -",
                self.name
            ));
        }
        gcra::Gcra::new(self, gcra::NANOS)
            .map(drop)
            .map_err(|reason| format!("rate-limit policy `{}`: {reason}", self.name))
    }
}

/// The answer to one request under one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed; a refused request took nothing from the budget.
    pub allowed: bool,
    /// The policy's burst: the most requests an idle key may make at once.
    pub limit: u32,
    /// Requests the key may still make right now (0 when refused).
    pub remaining: u32,
    /// Time until the key's budget is entirely refilled (zero for an idle key).
    pub reset_after: Duration,
    /// When refused: time until one more request would be allowed. `None` when allowed.
    pub retry_after: Option<Duration>,
}

/// A rate-limit backend. Implementations take one request from a key's budget atomically,
/// however many tasks, threads or gateway replicas ask at once.
pub trait Limiter: Send + Sync + 'static + fmt::Debug {
    /// Takes one request from `key`'s budget under `policy` (atomically). Budgets are per
    /// (policy name, key): the same key under two policies has two budgets.
    ///
    /// An error means no decision could be made; the gateway fails open on it (see the
    /// module documentation).
    fn check<'a>(
        &'a self,
        key: &'a str,
        policy: &'a RatePolicy,
    ) -> Pin<Box<dyn Future<Output = Result<Decision, LimiterError>> + Send + 'a>>;
}

/// Why a limiter could not decide. The gateway fails open on every variant: it logs and
/// counts the error and lets the request through (see the module documentation).
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// The policy cannot be enforced (see [`RatePolicy::validate`]); the routes file that
    /// carried it should have been refused.
    #[error("invalid rate-limit policy `{name}`: {reason}")]
    InvalidPolicy {
        /// The policy's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] ::redis::RedisError),
    /// Redis could not be reached when connecting.
    #[error("cannot connect to Redis: {0}")]
    Connect(#[source] ::redis::RedisError),
    /// Redis answered with an error, or the connection failed during the call.
    #[error("Redis rate-limit call failed: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// Redis did not answer within the limiter's time budget (it is down or overloaded).
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The rate-limit script answered something other than its two integers.
    #[error("unexpected reply from the Redis rate-limit script: {0}")]
    UnexpectedReply(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, requests: u32, period_secs: u32, burst: u32) -> RatePolicy {
        RatePolicy {
            name: name.to_owned(),
            requests,
            period_secs,
            burst,
        }
    }

    #[test]
    fn a_sensible_policy_is_valid() {
        assert_eq!(policy("per-user_1", 100, 60, 20).validate(), Ok(()));
        assert_eq!(policy(&"a".repeat(64), 1, 1, 1).validate(), Ok(()));
    }

    #[test]
    fn zero_requests_period_or_burst_is_refused() {
        for (requests, period, burst) in [(0, 60, 1), (1, 0, 1), (1, 60, 0)] {
            let err = policy("p", requests, period, burst).validate().unwrap_err();
            assert!(err.contains("`p`"), "{err}");
        }
    }

    #[test]
    fn names_outside_the_allowed_alphabet_or_length_are_refused() {
        for name in [
            "",
            "Upper",
            "with space",
            "quote\"",
            "é",
            "a:b",
            &"a".repeat(65),
        ] {
            assert!(policy(name, 1, 1, 1).validate().is_err(), "{name:?}");
        }
    }

    #[test]
    fn more_than_a_million_requests_a_second_is_refused() {
        assert_eq!(policy("p", 1_000_000, 1, 1).validate(), Ok(()));
        assert!(policy("p", 1_000_001, 1, 1).validate().is_err());
    }

    #[test]
    fn a_burst_that_takes_over_a_year_to_refill_is_refused() {
        // One request a day: 366 of them refill in 366 days, 367 do not.
        assert_eq!(policy("p", 1, 86_400, 366).validate(), Ok(()));
        assert!(policy("p", 1, 86_400, 367).validate().is_err());
    }

    #[test]
    fn policies_deserialize_and_unknown_fields_are_refused() {
        let parsed: RatePolicy =
            serde_json::from_str(r#"{"name":"api","requests":100,"period_secs":60,"burst":10}"#)
                .unwrap();
        assert_eq!(parsed, policy("api", 100, 60, 10));
        let typo = r#"{"name":"api","requests":100,"period_secs":60,"burst":10,"brust":3}"#;
        assert!(serde_json::from_str::<RatePolicy>(typo).is_err());
    }
}
