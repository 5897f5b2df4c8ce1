//! The operator's Prometheus metrics (served on the admin listener's `/metrics`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tessera_keys::KeyChange;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    to: String,
}

/// Reconcile counts and durations, errors, and key state changes.
#[derive(Debug, Clone)]
pub struct OperatorMetrics {
    reconciles: Family<ResultLabels, Counter>,
    errors: Counter,
    duration: Family<ResultLabels, Histogram, fn() -> Histogram>,
    key_changes: Family<ChangeLabels, Counter>,
}

fn histogram() -> Histogram {
    // 5 ms .. ~40 s: a reconcile is a few dozen API calls.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            errors: Counter::default(),
            duration: Family::new_with_constructor(histogram),
            key_changes: Family::default(),
        }
    }
}

impl OperatorMetrics {
    /// Registers every series in `registry` (the service kit's, prefix `tessera_`).
    pub fn register(&self, registry: &service_kit::Metrics) {
        // Every series exists from the start (at 0), so rates and alerts work before the
        // first reconcile or rotation.
        for result in ["success", "error"] {
            drop(self.reconciles.get_or_create(&ResultLabels { result }));
            drop(self.duration.get_or_create(&ResultLabels { result }));
        }
        for to in ["next", "active", "retiring", "removed"] {
            drop(
                self.key_changes
                    .get_or_create(&ChangeLabels { to: to.into() }),
            );
        }
        registry.register(
            "operator_reconciles",
            "Reconciles, by result",
            self.reconciles.clone(),
        );
        registry.register(
            "operator_reconcile_errors",
            "Reconciles that failed",
            self.errors.clone(),
        );
        registry.register(
            "operator_reconcile_duration_seconds",
            "Time a reconcile took, by result",
            self.duration.clone(),
        );
        registry.register(
            "operator_key_rotations",
            "Signing-key state changes, by new state (next, active, retiring, removed)",
            self.key_changes.clone(),
        );
    }

    pub(crate) fn observe_reconcile(&self, took: Duration, ok: bool) {
        let labels = ResultLabels {
            result: if ok { "success" } else { "error" },
        };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.errors.inc();
        }
    }

    pub(crate) fn key_changed(&self, change: &KeyChange) {
        let to = change.to.map_or("removed".to_owned(), |s| s.to_string());
        self.key_changes.get_or_create(&ChangeLabels { to }).inc();
    }
}
