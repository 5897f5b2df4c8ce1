//! Passive outlier detection for one endpoint: after `threshold` consecutive failures it
//! is ejected (receives no traffic) for the ejection period; any success resets it.

use std::time::{Duration, Instant};

/// One endpoint's failure streak and ejection; time is passed in so tests drive it.
#[derive(Debug, Default)]
pub(crate) struct Outlier {
    consecutive_failures: u32,
    /// When the current ejection started and ends.
    ejected: Option<(Instant, Instant)>,
}

impl Outlier {
    /// Records an attempt's outcome. Returns `true` when this failure ejected the
    /// endpoint (for logging). A `threshold` of 0 disables ejection.
    pub(crate) fn record(
        &mut self,
        failed: bool,
        now: Instant,
        threshold: u32,
        ejection: Duration,
    ) -> bool {
        if !failed {
            // A success also ends an ejection early: it only happens when every endpoint
            // was ejected and this one was tried anyway, and it shows it is back.
            *self = Self::default();
            return false;
        }
        if threshold == 0 {
            return false;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        // An ejected endpoint that fails again (tried because all were ejected) is
        // ejected anew, so the next such pick prefers another endpoint.
        let already_ejected = self.ejected_since(now).is_some();
        if already_ejected || self.consecutive_failures >= threshold {
            self.ejected = Some((now, super::after(now, ejection)));
            // Back from ejection, the endpoint has to fail `threshold` times again.
            self.consecutive_failures = 0;
            return !already_ejected;
        }
        false
    }

    /// When the ongoing ejection started, or `None` when the endpoint is in rotation.
    pub(crate) fn ejected_since(&self, now: Instant) -> Option<Instant> {
        self.ejected
            .and_then(|(since, until)| (now < until).then_some(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EJECTION: Duration = Duration::from_secs(30);

    #[test]
    fn consecutive_failures_eject_the_endpoint_for_the_ejection_period() {
        let t0 = Instant::now();
        let mut outlier = Outlier::default();
        assert!(!outlier.record(true, t0, 3, EJECTION));
        assert!(!outlier.record(true, t0, 3, EJECTION));
        assert_eq!(outlier.ejected_since(t0), None);
        assert!(outlier.record(true, t0, 3, EJECTION));
        assert_eq!(
            outlier.ejected_since(t0 + Duration::from_secs(29)),
            Some(t0)
        );
        assert_eq!(outlier.ejected_since(t0 + EJECTION), None);
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let t0 = Instant::now();
        let mut outlier = Outlier::default();
        outlier.record(true, t0, 3, EJECTION);
        outlier.record(true, t0, 3, EJECTION);
        outlier.record(false, t0, 3, EJECTION);
        outlier.record(true, t0, 3, EJECTION);
        outlier.record(true, t0, 3, EJECTION);
        assert_eq!(outlier.ejected_since(t0), None);
    }

    #[test]
    fn a_threshold_of_zero_never_ejects() {
        let t0 = Instant::now();
        let mut outlier = Outlier::default();
        for _ in 0..10 {
            outlier.record(true, t0, 0, EJECTION);
        }
        assert_eq!(outlier.ejected_since(t0), None);
    }

    #[test]
    fn an_ejected_endpoint_that_fails_again_is_ejected_anew() {
        let t0 = Instant::now();
        let mut outlier = Outlier::default();
        outlier.record(true, t0, 1, EJECTION);
        let t1 = t0 + Duration::from_secs(5);
        outlier.record(true, t1, 1, EJECTION);
        assert_eq!(outlier.ejected_since(t1), Some(t1));
        outlier.record(false, t1, 1, EJECTION);
        assert_eq!(outlier.ejected_since(t1), None);
    }
}
