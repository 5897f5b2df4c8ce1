//! The circuit breaker of one upstream: closed → open when the failure ratio over the
//! rolling window crosses the threshold; open refuses at once; after `open_for` one probe
//! goes through (half-open); its success closes the circuit, its failure reopens it.
//!
//! Each client request is recorded once, with its final outcome after retries: the
//! breaker judges the upstream as a whole, retries already absorb single endpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::window::Window;

/// What a request refused while a probe is in flight is told to wait: the probe usually
/// answers well within a second.
const HALF_OPEN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The breaker's thresholds.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) failure_ratio: f64,
    pub(crate) min_requests: u32,
    pub(crate) open_for: Duration,
}

/// The breaker's state as reported by [`super::Upstream::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused with 503.
    Open,
    /// One probe may go through (or is in flight); the rest are refused.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Core {
    settings: Settings,
    state: State,
    /// Requests and failures while closed.
    window: Window,
    /// When the last failure was recorded: a circuit opens only on failures in the
    /// window, so a success long after the last one has nothing to judge (the healthy
    /// case skips summing the window).
    last_failure: Option<Instant>,
}

/// Whether a request went through as ordinary traffic or as the half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Probe,
}

/// A circuit breaker; time is passed in so tests drive it.
#[derive(Debug)]
pub(crate) struct Breaker {
    core: Mutex<Core>,
    /// Whether the state is `Closed`, readable without the lock: nearly every request
    /// meets a closed breaker, and taking a lock every worker thread writes costs more
    /// than the admission itself. Written under the lock whenever the state changes.
    closed: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(settings: Settings, origin: Instant) -> Self {
        Self {
            core: Mutex::new(Core {
                settings,
                state: State::Closed,
                window: Window::new(origin),
                last_failure: None,
            }),
            closed: AtomicBool::new(true),
        }
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        // The critical sections cannot leave the state half-updated; a panic elsewhere
        // while holding the lock does not make it unusable.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a request through, or says how long the caller should wait.
    pub(crate) fn admit(&self, now: Instant) -> Result<Permit<'_>, Duration> {
        // A request racing a state change is admitted as if it came just before it.
        if self.closed.load(Ordering::Acquire) {
            return Ok(Permit {
                breaker: self,
                admission: Admission::Normal,
                settled: false,
            });
        }
        let mut core = self.core();
        let admission = match core.state {
            State::Closed => Admission::Normal,
            State::Open { until } if now < until => return Err(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                core.state = State::HalfOpen { probing: true };
                Admission::Probe
            }
            State::HalfOpen { probing: true } => return Err(HALF_OPEN_RETRY_AFTER),
        };
        Ok(Permit {
            breaker: self,
            admission,
            settled: false,
        })
    }

    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.core().state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// Permission for one request; report its outcome with [`Permit::record`]. Dropped
/// without a record (the client went away, or the failure was the client's), a probe
/// hands its turn to the next request.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    admission: Admission,
    settled: bool,
}

impl Permit<'_> {
    pub(crate) fn record(mut self, failed: bool, now: Instant) {
        self.settled = true;
        let mut core = self.breaker.core();
        let open_for = core.settings.open_for;
        match self.admission {
            Admission::Probe if failed => {
                core.state = State::Open {
                    until: super::after(now, open_for),
                };
            }
            Admission::Probe => {
                core.state = State::Closed;
                core.window.clear();
            }
            Admission::Normal => {
                core.window.add(now, 1, u64::from(failed));
                if failed {
                    core.last_failure = Some(now);
                }
                if core.state == State::Closed
                    && core.failures_in_window(now)
                    && core.should_trip(now)
                {
                    core.state = State::Open {
                        until: super::after(now, open_for),
                    };
                    // The next closed period is judged on its own traffic.
                    core.window.clear();
                    tracing::warn!("upstream circuit opened");
                }
            }
        }
        self.breaker
            .closed
            .store(core.state == State::Closed, Ordering::Release);
    }
}

/// How long a failure can count in the window (its bucket is a whole second).
const FAILURE_MEMORY: Duration = Duration::from_secs(super::window::SECONDS + 1);

impl Core {
    /// Whether the window may hold a failure.
    fn failures_in_window(&self, now: Instant) -> bool {
        self.last_failure
            .is_some_and(|at| now.saturating_duration_since(at) <= FAILURE_MEMORY)
    }

    fn should_trip(&self, now: Instant) -> bool {
        let (requests, failures) = self.window.totals(now);
        #[expect(
            clippy::cast_precision_loss,
            reason = "counts in a ten-second window are far below 2^52"
        )]
        let ratio = failures as f64 / requests as f64;
        // `failures > 0`: a ratio of 0 configured must not open a healthy circuit.
        requests >= u64::from(self.settings.min_requests)
            && failures > 0
            && ratio >= self.settings.failure_ratio
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.admission == Admission::Probe {
            let mut core = self.breaker.core();
            if core.state == (State::HalfOpen { probing: true }) {
                core.state = State::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(origin: Instant) -> Breaker {
        Breaker::new(
            Settings {
                failure_ratio: 0.5,
                min_requests: 4,
                open_for: Duration::from_secs(5),
            },
            origin,
        )
    }

    fn run(breaker: &Breaker, now: Instant, failed: bool) {
        breaker.admit(now).expect("admitted").record(failed, now);
    }

    #[test]
    fn the_circuit_opens_when_the_failure_ratio_is_reached_with_enough_requests() {
        let t0 = Instant::now();
        let b = breaker(t0);
        run(&b, t0, true);
        run(&b, t0, true);
        run(&b, t0, true);
        // Three failures out of three: ratio reached, but below the minimum of four.
        assert_eq!(b.state(t0), BreakerState::Closed);
        run(&b, t0, false);
        assert_eq!(b.state(t0), BreakerState::Open);
        let wait = b.admit(t0 + Duration::from_secs(2)).expect_err("refused");
        assert_eq!(wait, Duration::from_secs(3));
    }

    #[test]
    fn a_low_failure_ratio_keeps_the_circuit_closed() {
        let t0 = Instant::now();
        let b = breaker(t0);
        for i in 0..20 {
            run(&b, t0, i % 3 == 2);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let b = breaker(t0);
        run(&b, t0, true);
        run(&b, t0, true);
        run(&b, t0, true);
        let later = t0 + Duration::from_secs(11);
        run(&b, later, true);
        assert_eq!(b.state(later), BreakerState::Closed);
    }

    #[test]
    fn after_the_open_period_one_probe_goes_through_and_its_success_closes_the_circuit() {
        let t0 = Instant::now();
        let b = breaker(t0);
        for _ in 0..4 {
            run(&b, t0, true);
        }
        let t1 = t0 + Duration::from_secs(5);
        let probe = b.admit(t1).expect("the probe is admitted");
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert_eq!(
            b.admit(t1).expect_err("only one probe"),
            HALF_OPEN_RETRY_AFTER
        );
        probe.record(false, t1);
        assert_eq!(b.state(t1), BreakerState::Closed);
        // The window was cleared: one new failure does not reopen it.
        run(&b, t1, true);
        assert_eq!(b.state(t1), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_the_circuit_for_another_period() {
        let t0 = Instant::now();
        let b = breaker(t0);
        for _ in 0..4 {
            run(&b, t0, true);
        }
        let t1 = t0 + Duration::from_secs(6);
        b.admit(t1).expect("probe").record(true, t1);
        assert_eq!(b.state(t1), BreakerState::Open);
        assert_eq!(
            b.admit(t1 + Duration::from_secs(1)).expect_err("open"),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_request_probe() {
        let t0 = Instant::now();
        let b = breaker(t0);
        for _ in 0..4 {
            run(&b, t0, true);
        }
        let t1 = t0 + Duration::from_secs(5);
        drop(b.admit(t1).expect("probe"));
        b.admit(t1).expect("a new probe").record(false, t1);
        assert_eq!(b.state(t1), BreakerState::Closed);
    }

    #[test]
    fn a_ratio_above_one_never_opens_the_circuit() {
        let t0 = Instant::now();
        let b = Breaker::new(
            Settings {
                failure_ratio: 1.1,
                min_requests: 1,
                open_for: Duration::from_secs(5),
            },
            t0,
        );
        for _ in 0..50 {
            run(&b, t0, true);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }
}
