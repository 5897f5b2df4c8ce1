//! [`Bus`]: the one value a service is given to publish and consume, whether the process
//! talks to NATS JetStream or runs inside the all-in-one binary.

use std::sync::Arc;

use service_kit::{CancellationToken, Readiness};

use crate::consumer::ConsumerConfig;
use crate::handler::Router;
use crate::jetstream::JetStreamBus;
use crate::memory::InProcessBus;
use crate::metrics::EventMetrics;
use crate::sink::Sink;

/// The event transport of a service.
#[derive(Debug, Clone)]
pub enum Bus {
    /// NATS JetStream (standalone services, Kubernetes).
    JetStream(JetStreamBus),
    /// The all-in-one binary's in-process bus.
    InProcess(InProcessBus),
}

impl Bus {
    /// Where the service's relay publishes.
    pub fn sink(&self) -> Arc<dyn Sink> {
        match self {
            Self::JetStream(bus) => Arc::new(bus.clone()),
            Self::InProcess(bus) => Arc::new(bus.clone()),
        }
    }

    /// Registers the `bus` readiness check (always ready in process).
    pub fn add_readiness_check(&self, readiness: &Readiness) {
        match self {
            Self::JetStream(bus) => bus.add_readiness_check(readiness),
            Self::InProcess(_) => readiness.add("bus", || async { Ok(()) }),
        }
    }

    /// Starts consuming `config.subjects` with `router`: a durable JetStream consumer
    /// task, or a subscription on the in-process bus (register before it starts).
    pub fn subscribe(
        &self,
        config: ConsumerConfig,
        router: Router,
        metrics: EventMetrics,
        shutdown: &CancellationToken,
    ) {
        match self {
            Self::JetStream(bus) => {
                bus.consume(config, router, metrics, shutdown.clone());
            }
            Self::InProcess(bus) => bus.subscribe(config, router, metrics),
        }
    }
}
