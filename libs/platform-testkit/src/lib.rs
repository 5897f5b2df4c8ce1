//! Test-only harness for services that ship their logs: the real identity and logging
//! services started on a thread and runtime of their own, a log-reader token, and the
//! checks every log-shipping test makes.
//!
//! Why their own runtime: a test installs the shipping layer under test for its own
//! thread only (the test binary's global subscriber is taken), so identity's and
//! logging's own request logs must run elsewhere or they would be shipped as the
//! service's.

mod platform;
mod runtime;
mod shipping;

pub use platform::{
    Endpoints, Logging, Platform, admin_token, loopback, serve_on_loopback, start_identity,
};
pub use runtime::on_own_runtime;
pub use shipping::{
    access_log, assert_shipping_metrics, serve_shipping_logs, ship_logs_on_this_thread,
};
