//! Per-channel rate limits: sends are spaced evenly at the configured rate, so a burst of
//! jobs never exceeds what a provider or SMTP relay allows.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces events `1 / rate` apart; callers wait for their slot.
#[derive(Debug)]
pub struct Pacer {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    /// A pacer for `per_second` events per second; 0 or less means no limit.
    pub fn new(per_second: f64) -> Self {
        let interval = (per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / per_second));
        Self {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next free slot and takes it.
    pub async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = (*next).max(Instant::now());
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_are_spaced_at_the_configured_rate() {
        let pacer = Pacer::new(10.0);
        let start = Instant::now();
        for _ in 0..11 {
            pacer.wait().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "11 sends at 10/s take 1 s"
        );
        let unlimited = Pacer::new(0.0);
        let start = Instant::now();
        for _ in 0..1000 {
            unlimited.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
