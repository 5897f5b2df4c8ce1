//! Notification's integration tests: the signup flow end to end (identity, profile,
//! NATS JetStream, notification, a real SMTP server, a recorder for the SMS provider),
//! delivery faults, the request API and its OpenAPI document.

mod support;

mod api;
mod db;
mod delivery;
mod faults;
mod logging;
mod openapi;
mod smtp;
mod welcome;
