//! Event metrics, registered in the service's registry (`tessera_events_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Labels of the per-consumer counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConsumerLabels {
    pub(crate) consumer: String,
    /// `handled`, `retried`, `unknown_type`, `dead_lettered`.
    pub(crate) outcome: &'static str,
}

/// The relay's and consumers' metrics. Cheap to clone (shared counters); read them in
/// tests through the accessors.
#[derive(Debug, Clone, Default)]
pub struct EventMetrics {
    relayed: Counter,
    relay_failures: Counter,
    backlog: Gauge,
    consumed: Family<ConsumerLabels, Counter>,
}

impl EventMetrics {
    /// Fresh metrics, not yet registered anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers them in a service's registry (call once at start).
    pub fn register(&self, metrics: &service_kit::Metrics) {
        metrics.register(
            "events_relayed",
            "Outbox events published and acknowledged by the bus",
            self.relayed.clone(),
        );
        metrics.register(
            "events_relay_failures",
            "Attempts to publish an outbox event that failed (it stays in the outbox)",
            self.relay_failures.clone(),
        );
        metrics.register(
            "events_outbox_backlog",
            "Outbox events not yet published",
            self.backlog.clone(),
        );
        metrics.register(
            "events_consumed",
            "Deliveries of events to this service's consumers, by outcome",
            self.consumed.clone(),
        );
    }

    /// Events relayed so far.
    pub fn relayed(&self) -> u64 {
        self.relayed.get()
    }

    /// Failed publish attempts so far.
    pub fn relay_failures(&self) -> u64 {
        self.relay_failures.get()
    }

    /// Unsent outbox rows at the relay's last look.
    pub fn backlog(&self) -> i64 {
        self.backlog.get()
    }

    /// Deliveries to `consumer` that ended with `outcome` (`handled`, `retried`,
    /// `unknown_type`, `dead_lettered`).
    pub fn consumed(&self, consumer: &str, outcome: &'static str) -> u64 {
        self.consumed
            .get_or_create(&ConsumerLabels {
                consumer: consumer.to_owned(),
                outcome,
            })
            .get()
    }

    pub(crate) fn add_relayed(&self, n: u64) {
        self.relayed.inc_by(n);
    }

    pub(crate) fn add_relay_failure(&self) {
        self.relay_failures.inc();
    }

    pub(crate) fn set_backlog(&self, n: i64) {
        self.backlog.set(n);
    }

    pub(crate) fn count(&self, consumer: &str, outcome: &'static str) {
        self.consumed
            .get_or_create(&ConsumerLabels {
                consumer: consumer.to_owned(),
                outcome,
            })
            .inc();
    }
}
