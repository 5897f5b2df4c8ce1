//! Endpoint selection: round robin or least outstanding among endpoints that are not
//! ejected, avoiding endpoints a retry already tried; when every endpoint is ejected,
//! the one ejected longest ago is tried (a "panic threshold" of 100%: better to try a
//! possibly recovered endpoint than to fail every request).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Balance;
use super::client::Target;
use super::outlier::Outlier;

/// One endpoint of an upstream and its live state.
#[derive(Debug)]
pub(crate) struct Endpoint {
    target: Target,
    outstanding: AtomicUsize,
    outlier: Mutex<Outlier>,
}

impl Endpoint {
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target,
            outstanding: AtomicUsize::new(0),
            outlier: Mutex::new(Outlier::default()),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub(crate) fn ejected_since(&self, now: Instant) -> Option<Instant> {
        self.outlier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ejected_since(now)
    }

    /// Records an attempt's outcome for outlier detection.
    pub(crate) fn record(&self, failed: bool, now: Instant, threshold: u32, ejection: Duration) {
        let ejected = self
            .outlier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(failed, now, threshold, ejection);
        if ejected {
            tracing::warn!(endpoint = %self.target, ?ejection, "upstream endpoint ejected");
        }
    }
}

/// A request in flight to an endpoint; counts for least-outstanding until dropped, which
/// happens when the response body ends (or the WebSocket closes), not at the headers.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Endpoint>);

impl InFlight {
    pub(crate) fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.outstanding.fetch_add(1, Ordering::Relaxed);
        Self(endpoint)
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Picks endpoints for one upstream.
#[derive(Debug)]
pub(crate) struct Balancer {
    policy: Balance,
    next: AtomicUsize,
}

impl Balancer {
    pub(crate) fn new(policy: Balance) -> Self {
        Self {
            policy,
            next: AtomicUsize::new(0),
        }
    }

    /// The index of the endpoint for the next attempt, or `None` when there are none.
    /// `tried` are the endpoints earlier attempts of this request used.
    pub(crate) fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        tried: &[usize],
        now: Instant,
    ) -> Option<usize> {
        let count = endpoints.len();
        // One endpoint is every branch's answer below; skip their bookkeeping.
        if count == 1 {
            return Some(0);
        }
        let ejected: Vec<Option<Instant>> =
            endpoints.iter().map(|e| e.ejected_since(now)).collect();
        let fresh = |i: usize| ejected[i].is_none() && !tried.contains(&i);
        let healthy = |i: usize| ejected[i].is_none();
        // Only first attempts take a turn: if retries did too, an endpoint that fails
        // every request would keep landing on the same turn parity and be the first
        // attempt of every request instead of its share.
        let turn = if tried.is_empty() {
            self.next.fetch_add(1, Ordering::Relaxed)
        } else {
            self.next.load(Ordering::Relaxed)
        };
        if (0..count).any(fresh) {
            Some(self.choose(endpoints, turn, fresh))
        } else if (0..count).any(healthy) {
            Some(self.choose(endpoints, turn, healthy))
        } else {
            // Every endpoint is ejected: the one ejected longest ago, preferring one this
            // request has not tried yet.
            (0..count).min_by_key(|&i| (tried.contains(&i), ejected[i]))
        }
    }

    /// Applies the policy among the endpoints `eligible` accepts (at least one does).
    fn choose(
        &self,
        endpoints: &[Arc<Endpoint>],
        turn: usize,
        eligible: impl Fn(usize) -> bool,
    ) -> usize {
        let count = endpoints.len();
        match self.policy {
            Balance::RoundRobin => {
                // The n-th eligible endpoint, so an ejected endpoint's share is spread
                // evenly instead of going to its neighbour.
                let eligible_count = (0..count).filter(|&i| eligible(i)).count();
                (0..count)
                    .filter(|&i| eligible(i))
                    .nth(turn % eligible_count)
                    .unwrap_or(0)
            }
            Balance::LeastOutstanding => (0..count)
                .map(|k| (turn + k) % count)
                .filter(|&i| eligible(i))
                // `min_by_key` keeps the first minimum: starting at a rotating offset
                // breaks ties round robin.
                .min_by_key(|&i| endpoints[i].outstanding())
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Uri;

    use super::*;

    fn endpoints(n: u16) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                let uri: Uri = format!("http://127.0.0.1:{}", 8000 + i)
                    .parse()
                    .expect("uri");
                Arc::new(Endpoint::new(Target::parse(&uri).expect("target")))
            })
            .collect()
    }

    fn eject(endpoint: &Endpoint, now: Instant) {
        endpoint.record(true, now, 1, Duration::from_secs(30));
    }

    #[test]
    fn round_robin_takes_each_endpoint_in_turn() {
        let eps = endpoints(3);
        let balancer = Balancer::new(Balance::RoundRobin);
        let now = Instant::now();
        let picks: Vec<_> = (0..6)
            .map(|_| balancer.pick(&eps, &[], now).expect("pick"))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn ejected_endpoints_are_skipped_and_retries_avoid_tried_ones() {
        let eps = endpoints(3);
        let balancer = Balancer::new(Balance::RoundRobin);
        let now = Instant::now();
        eject(&eps[1], now);
        for _ in 0..6 {
            assert_ne!(balancer.pick(&eps, &[], now), Some(1));
            assert_eq!(balancer.pick(&eps, &[0], now), Some(2));
        }
        // Every healthy endpoint tried: a healthy one again rather than an ejected one.
        assert_ne!(balancer.pick(&eps, &[0, 2], now), Some(1));
    }

    #[test]
    fn retries_do_not_take_a_round_robin_turn() {
        let eps = endpoints(2);
        let balancer = Balancer::new(Balance::RoundRobin);
        let now = Instant::now();
        let mut first_attempts = Vec::new();
        for _ in 0..4 {
            let first = balancer.pick(&eps, &[], now).expect("pick");
            assert_ne!(balancer.pick(&eps, &[first], now), Some(first));
            first_attempts.push(first);
        }
        assert_eq!(first_attempts, [0, 1, 0, 1]);
    }

    #[test]
    fn least_outstanding_avoids_busy_endpoints_and_rotates_ties() {
        let eps = endpoints(3);
        let balancer = Balancer::new(Balance::LeastOutstanding);
        let now = Instant::now();
        let _busy = [InFlight::new(eps[0].clone()), InFlight::new(eps[2].clone())];
        assert_eq!(balancer.pick(&eps, &[], now), Some(1));
        let _busy_too = InFlight::new(eps[1].clone());
        let picks: Vec<_> = (0..6)
            .map(|_| balancer.pick(&eps, &[], now).expect("pick"))
            .collect();
        assert!(picks.contains(&0) && picks.contains(&1) && picks.contains(&2));
    }

    #[test]
    fn when_all_are_ejected_the_one_ejected_longest_ago_is_tried() {
        let eps = endpoints(3);
        let balancer = Balancer::new(Balance::RoundRobin);
        let t0 = Instant::now();
        eject(&eps[2], t0);
        eject(&eps[0], t0 + Duration::from_secs(1));
        eject(&eps[1], t0 + Duration::from_secs(2));
        let now = t0 + Duration::from_secs(3);
        assert_eq!(balancer.pick(&eps, &[], now), Some(2));
        assert_eq!(balancer.pick(&eps, &[2], now), Some(0));
    }

    #[test]
    fn no_endpoints_means_no_pick() {
        let balancer = Balancer::new(Balance::LeastOutstanding);
        assert_eq!(balancer.pick(&[], &[], Instant::now()), None);
    }
}
