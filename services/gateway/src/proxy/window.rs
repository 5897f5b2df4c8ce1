//! A rolling ten-second window of paired counters (requests and failures, or requests
//! and retries), shared by the circuit breaker and the retry budget.

use std::time::Instant;

/// Number of one-second buckets. Ten seconds is the window Finagle's retry budget and
/// Hystrix's breaker use: long enough to hold a meaningful sample at low traffic, short
/// enough that a recovered upstream is not judged by an old outage.
pub(crate) const SECONDS: u64 = BUCKETS as u64;
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The second (since the window's origin) this bucket counts.
    second: u64,
    counts: [u64; 2],
}

/// Counts over the last [`SECONDS`] seconds. Time is passed in, so tests drive it.
#[derive(Debug)]
pub(crate) struct Window {
    origin: Instant,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    /// An empty window; `origin` is any instant not after the first `now` passed in.
    pub(crate) fn new(origin: Instant) -> Self {
        Self {
            origin,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// Adds `first` and `second` to the counters of the current second.
    pub(crate) fn add(&mut self, now: Instant, first: u64, second: u64) {
        let current = self.second(now);
        let index = usize::try_from(current % SECONDS).expect("the remainder is below SECONDS");
        let bucket = &mut self.buckets[index];
        if bucket.second != current {
            *bucket = Bucket {
                second: current,
                counts: [0, 0],
            };
        }
        bucket.counts[0] += first;
        bucket.counts[1] += second;
    }

    /// Both counters summed over the last [`SECONDS`] seconds.
    pub(crate) fn totals(&self, now: Instant) -> (u64, u64) {
        let current = self.second(now);
        self.buckets
            .iter()
            .filter(|b| b.second <= current && b.second + SECONDS > current)
            .fold((0, 0), |(a, b), bucket| {
                (a + bucket.counts[0], b + bucket.counts[1])
            })
    }

    /// Forgets everything counted so far.
    pub(crate) fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counts_within_the_last_ten_seconds_are_summed() {
        let origin = Instant::now();
        let mut window = Window::new(origin);
        window.add(origin, 1, 0);
        window.add(origin + Duration::from_millis(1500), 2, 1);
        window.add(origin + Duration::from_secs(9), 3, 3);
        assert_eq!(window.totals(origin + Duration::from_secs(9)), (6, 4));
    }

    #[test]
    fn counts_older_than_ten_seconds_fall_out() {
        let origin = Instant::now();
        let mut window = Window::new(origin);
        window.add(origin, 5, 5);
        window.add(origin + Duration::from_secs(4), 1, 0);
        assert_eq!(window.totals(origin + Duration::from_secs(10)), (1, 0));
        // A bucket reused ten seconds later starts from zero.
        window.add(origin + Duration::from_secs(10), 1, 1);
        assert_eq!(window.totals(origin + Duration::from_secs(10)), (2, 1));
        assert_eq!(window.totals(origin + Duration::from_secs(30)), (0, 0));
    }

    #[test]
    fn clearing_forgets_everything() {
        let origin = Instant::now();
        let mut window = Window::new(origin);
        window.add(origin, 3, 2);
        window.clear();
        assert_eq!(window.totals(origin), (0, 0));
    }
}
