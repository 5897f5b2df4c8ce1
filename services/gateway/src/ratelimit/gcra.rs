//! The generic cell rate algorithm (GCRA) as pure integer arithmetic, shared by the local
//! and the Redis limiter so both decide and report alike.
//!
//! A key's whole state is its theoretical arrival time (TAT): the instant at which its
//! budget would be entirely refilled. With emission interval `T = period / requests` and
//! burst `b` (the most requests an idle key may make at once):
//!
//! - `backlog = max(TAT − now, 0)`: how much of the budget is in use, as time;
//! - a request is allowed iff `backlog + T ≤ b × T` (the "window"); then `TAT = now +
//!   backlog + T`. Equivalently `τ = (b − 1) × T` is the classic tolerance and the test
//!   is `TAT − now ≤ τ` before the update;
//! - a refused request leaves TAT alone and may retry after `backlog + T − window`;
//! - `remaining = floor((window − backlog) / T)` and the budget is full again after
//!   `backlog`.
//!
//! So an idle key gets exactly `b` requests at once, then one every `T`: `requests` per
//! `period` in the long run. Times are integer ticks (nanoseconds locally, microseconds in
//! Redis, whose Lua numbers are doubles), never floats.

use std::time::Duration;

use super::{Decision, RatePolicy};

/// Nanoseconds per tick for the local limiter.
pub(crate) const NANOS: u64 = 1;
/// Nanoseconds per tick for the Redis limiter: Redis `TIME` has microsecond resolution and
/// microseconds since 1970 stay exact in a Lua double (below 2^53) for centuries.
pub(crate) const MICROS: u64 = 1_000;

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Shortest emission interval: one microsecond, the Redis backend's resolution (a million
/// requests a second per key is far beyond what one gateway serves).
const MIN_INTERVAL_NANOS: u64 = 1_000;
/// Longest time a burst may take to refill: beyond a year a policy is a mistake, and the
/// bound keeps `now + window` exact in Redis's Lua doubles.
const MAX_WINDOW_NANOS: u64 = 366 * 86_400 * NANOS_PER_SEC;

/// A policy's GCRA parameters in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Emission interval `T`, in ticks (at least 1).
    interval: u64,
    /// `burst × T`, in ticks: the most budget a key may have in use.
    window: u64,
    burst: u32,
    tick_nanos: u64,
}

/// The outcome of one request, before it is turned into a [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admission {
    pub(crate) allowed: bool,
    /// `TAT − now` after the request, in ticks (unchanged when refused).
    pub(crate) backlog: u64,
}

impl Gcra {
    /// The parameters of `policy` at a resolution of `tick_nanos` nanoseconds ([`NANOS`]
    /// or [`MICROS`]). Refuses what [`RatePolicy::validate`] refuses, except the name.
    pub(crate) fn new(policy: &RatePolicy, tick_nanos: u64) -> Result<Self, String> {
        if policy.requests == 0 || policy.period_secs == 0 || policy.burst == 0 {
            return Err("requests, period_secs and burst must each be at least 1".to_owned());
        }
        let period_nanos = u64::from(policy.period_secs) * NANOS_PER_SEC;
        if period_nanos / u64::from(policy.requests) < MIN_INTERVAL_NANOS {
            return Err("more than a million requests a second cannot be enforced".to_owned());
        }
        let interval_nanos = period_nanos / u64::from(policy.requests);
        if u128::from(interval_nanos) * u128::from(policy.burst) > u128::from(MAX_WINDOW_NANOS) {
            return Err(format!(
                "a burst of {} takes more than 366 days to refill",
                policy.burst
            ));
        }
        // Computed from the period in ticks rather than from `interval_nanos` so that
        // microsecond ticks lose at most one microsecond, not a rounded nanosecond part.
        let interval = period_nanos / tick_nanos / u64::from(policy.requests);
        Ok(Self {
            interval,
            window: interval * u64::from(policy.burst),
            burst: policy.burst,
            tick_nanos,
        })
    }

    /// Emission interval `T` in ticks.
    pub(crate) fn interval(&self) -> u64 {
        self.interval
    }

    /// `burst × T` in ticks.
    pub(crate) fn window(&self) -> u64 {
        self.window
    }

    /// Decides one request given the key's `backlog` (`max(TAT − now, 0)`, in ticks).
    /// The Redis script performs exactly this comparison; keep the two in step.
    pub(crate) fn admit(&self, backlog: u64) -> Admission {
        let after = backlog.saturating_add(self.interval);
        if after <= self.window {
            Admission {
                allowed: true,
                backlog: after,
            }
        } else {
            Admission {
                allowed: false,
                backlog,
            }
        }
    }

    /// Decides one request for a key whose TAT is `tat` (`None` for an unknown key) at
    /// `now`, both in ticks since any fixed origin. Returns the decision and, when allowed,
    /// the key's new TAT.
    pub(crate) fn check(&self, tat: Option<u64>, now: u64) -> (Decision, Option<u64>) {
        let backlog = tat.map_or(0, |tat| tat.saturating_sub(now));
        let admission = self.admit(backlog);
        let new_tat = admission
            .allowed
            .then(|| now.saturating_add(admission.backlog));
        (self.decision(admission), new_tat)
    }

    /// What the client is told about an admission.
    pub(crate) fn decision(&self, admission: Admission) -> Decision {
        let free = self.window.saturating_sub(admission.backlog);
        Decision {
            allowed: admission.allowed,
            limit: self.burst,
            remaining: u32::try_from(free / self.interval).unwrap_or(self.burst),
            reset_after: self.duration(admission.backlog),
            retry_after: (!admission.allowed).then(|| {
                self.duration(
                    admission
                        .backlog
                        .saturating_add(self.interval)
                        .saturating_sub(self.window),
                )
            }),
        }
    }

    fn duration(&self, ticks: u64) -> Duration {
        Duration::from_nanos(ticks.saturating_mul(self.tick_nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = NANOS_PER_SEC;

    fn gcra(requests: u32, period_secs: u32, burst: u32) -> Gcra {
        let policy = RatePolicy {
            name: "p".to_owned(),
            requests,
            period_secs,
            burst,
        };
        Gcra::new(&policy, NANOS).unwrap()
    }

    /// Runs one request against a single key's TAT, as the local limiter does.
    fn take(g: &Gcra, tat: &mut Option<u64>, now: u64) -> Decision {
        let (decision, new_tat) = g.check(*tat, now);
        if let Some(new_tat) = new_tat {
            *tat = Some(new_tat);
        }
        decision
    }

    #[test]
    fn exactly_burst_immediate_requests_pass_then_one_every_interval() {
        // 10 per 60 s: T = 6 s; burst 5.
        let g = gcra(10, 60, 5);
        let t = 6 * SEC;
        let start = 1_000 * SEC;
        let mut tat = None;
        for i in 0..5u32 {
            let d = take(&g, &mut tat, start);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 4 - i);
            assert_eq!(d.limit, 5);
            assert_eq!(d.retry_after, None);
            assert_eq!(d.reset_after, Duration::from_secs(6 * u64::from(i + 1)));
        }
        let refused = take(&g, &mut tat, start);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(6)));
        assert_eq!(refused.reset_after, Duration::from_secs(30));

        // One nanosecond early is still too early; after T exactly one more passes.
        assert!(!take(&g, &mut tat, start + t - 1).allowed);
        let recovered = take(&g, &mut tat, start + t);
        assert!(recovered.allowed);
        assert_eq!(recovered.remaining, 0);
        assert!(!take(&g, &mut tat, start + t).allowed);
    }

    #[test]
    fn a_refused_request_takes_nothing_from_the_budget() {
        let g = gcra(1, 1, 1);
        let mut tat = None;
        assert!(take(&g, &mut tat, 0).allowed);
        let before = tat;
        for _ in 0..100 {
            assert!(!take(&g, &mut tat, SEC / 2).allowed);
        }
        assert_eq!(tat, before);
        assert!(take(&g, &mut tat, SEC).allowed);
    }

    #[test]
    fn an_idle_key_refills_to_the_burst_and_no_further() {
        let g = gcra(2, 1, 3);
        let mut tat = None;
        for _ in 0..3 {
            assert!(take(&g, &mut tat, 0).allowed);
        }
        // An hour idle: a full burst again, but not more than the burst.
        let later = 3_600 * SEC;
        let allowed = (0..10)
            .filter(|_| take(&g, &mut tat, later).allowed)
            .count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn half_an_interval_refills_nothing_and_remaining_counts_whole_requests() {
        let g = gcra(1, 10, 4);
        let mut tat = None;
        for _ in 0..4 {
            take(&g, &mut tat, 0);
        }
        let d = g.check(tat, 5 * SEC).0;
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_secs(5)));
        assert_eq!(d.reset_after, Duration::from_secs(35));
        let d = take(&g, &mut tat, 25 * SEC);
        assert!(d.allowed);
        // 25 s refilled two and a half requests; one was just taken.
        assert_eq!(d.remaining, 1);
    }

    #[test]
    fn the_steady_rate_is_requests_per_period() {
        // 100 per 60 s with a burst of 10, offered once every 10 ms for 10 minutes.
        let g = gcra(100, 60, 10);
        let mut tat = None;
        let step = SEC / 100;
        let allowed = (0..60_000u64)
            .filter(|i| take(&g, &mut tat, i * step).allowed)
            .count();
        // The burst plus one request per T = 0.6 s over 600 s (the last T not yet due).
        assert_eq!(allowed, 10 + 1_000 - 1);
    }

    #[test]
    fn microsecond_ticks_decide_like_nanosecond_ticks() {
        let policy = RatePolicy {
            name: "p".to_owned(),
            requests: 3,
            period_secs: 1,
            burst: 2,
        };
        let micros = Gcra::new(&policy, MICROS).unwrap();
        assert_eq!(micros.interval(), 333_333);
        assert_eq!(micros.window(), 666_666);
        let first = micros.decision(micros.admit(0));
        assert_eq!(first.reset_after, Duration::from_micros(333_333));
        assert_eq!(first.remaining, 1);
        let refused = micros.decision(micros.admit(micros.window()));
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Some(Duration::from_micros(333_333)));
    }

    #[test]
    fn extreme_times_saturate_instead_of_overflowing() {
        let g = gcra(1, 86_400, 366);
        // A TAT far in the future (a corrupt or foreign value) refuses without panicking.
        let (d, tat) = g.check(Some(u64::MAX), 0);
        assert!(!d.allowed);
        assert_eq!(tat, None);
        assert_eq!(d.remaining, 0);
        let (d, tat) = g.check(None, u64::MAX);
        assert!(d.allowed);
        assert_eq!(tat, Some(u64::MAX));
    }
}
