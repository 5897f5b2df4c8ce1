//! The service kit: what every Tessera service shares, so each one only writes its own
//! routes and storage.
//!
//! - [`config`]: clap argument groups with `TESSERA_*` env fallbacks and a one-line error
//!   on bad settings ([`parse_or_exit`]).
//! - [`telemetry`]: JSON or pretty logs via `tracing`, filtered by `RUST_LOG`.
//! - [`Service`]: the public and admin listeners (DESIGN.md §2) with request ids, W3C
//!   trace context, metrics, problem+json errors, body limits, timeouts and graceful
//!   drain on shutdown.
//! - [`log_shipping`]: a layer that batches log records to the logging service over
//!   OTLP/HTTP without ever blocking a request.
//! - [`db`]: SQLite and PostgreSQL pools with embedded migrations, retried in the
//!   background and reported by `/readyz`.
//! - [`openapi`] and [`unavailable`]: what every service's OpenAPI document and HTTP error
//!   edge share (the document's JSON and route, the bearer scheme, the common problem
//!   responses; the 503 with `Retry-After` when the database is down).

pub mod accept;
pub mod clock;
pub mod config;
pub mod db;
pub mod direct;
pub mod health;
pub mod log_shipping;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod request_context;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;
pub mod unavailable;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    DatabaseArgs, HttpArgs, HttpSettings, LogFormat, LogShippingArgs, TelemetryArgs, parse_or_exit,
};
pub use db::{Database, DatabaseUrl, Migrations, Pool};
pub use health::Readiness;
pub use metrics::Metrics;
pub use problem::{ApiJson, Problem};
pub use request_context::RequestContext;
pub use server::{Listeners, ServeError, Service};
pub use trace_context::TraceContext;

/// Re-exported so services name one version of these.
pub use tokio_util::sync::CancellationToken;
