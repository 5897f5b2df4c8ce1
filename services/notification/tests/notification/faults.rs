//! Faults: NATS outage, notification killed mid-delivery.
