//! The retry budget of one upstream: retries over the last ten seconds may not exceed a
//! fraction of the requests, plus a small floor, so that when an upstream fails as a whole
//! retries add a bounded amount of load instead of multiplying it by `attempts`.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::window::{SECONDS, Window};

/// Retries always allowed per second regardless of traffic, so a quiet upstream can
/// still retry a lone failure (Finagle's `minRetriesPerSec` idea, smaller because a
/// gateway sees many upstreams).
const MIN_RETRIES_PER_SECOND: u64 = 3;

/// A retry budget; time is passed in so tests drive it.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    /// Requests and retries.
    window: Mutex<Window>,
}

impl RetryBudget {
    pub(crate) fn new(ratio: f64, origin: Instant) -> Self {
        Self {
            ratio,
            window: Mutex::new(Window::new(origin)),
        }
    }

    /// Counts one client request (not each attempt).
    pub(crate) fn record_request(&self, now: Instant) {
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(now, 1, 0);
    }

    /// Takes one retry from the budget if any is left.
    pub(crate) fn try_retry(&self, now: Instant) -> bool {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let (requests, retries) = window.totals(now);
        #[expect(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "window counts are far below 2^52 and the product is non-negative"
        )]
        let allowed =
            MIN_RETRIES_PER_SECOND * SECONDS + (self.ratio * requests as f64).floor() as u64;
        if retries < allowed {
            window.add(now, 0, 1);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn retries_are_capped_at_the_ratio_of_requests_plus_the_floor() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(0.2, t0);
        for _ in 0..100 {
            budget.record_request(t0);
        }
        let granted = (0..200).filter(|_| budget.try_retry(t0)).count();
        assert_eq!(granted, 30 + 20);
    }

    #[test]
    fn a_zero_ratio_still_allows_the_floor() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(0.0, t0);
        budget.record_request(t0);
        let granted = (0..100).filter(|_| budget.try_retry(t0)).count();
        assert_eq!(granted, 30);
    }

    #[test]
    fn the_budget_refills_as_old_retries_leave_the_window() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(0.0, t0);
        while budget.try_retry(t0) {}
        assert!(!budget.try_retry(t0 + Duration::from_secs(9)));
        assert!(budget.try_retry(t0 + Duration::from_secs(10)));
    }
}
