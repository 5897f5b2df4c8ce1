//! Test-only harness for tests that need the real platform around the service under
//! test: identity with registered service clients (and users and tokens from it), and
//! identity and logging started on a thread and runtime of their own with a log-reader
//! token and the checks every log-shipping test makes.
//!
//! Why their own runtime: a test installs the shipping layer under test for its own
//! thread only (the test binary's global subscriber is taken), so identity's and
//! logging's own request logs must run elsewhere or they would be shipped as the
//! service's.

mod identity;
mod platform;
mod runtime;
mod shipping;

pub use identity::{
    PASSWORD, ServiceClient, admin_token, client_registry, new_user, service_token, start_identity,
};
pub use platform::{Endpoints, Logging, Platform, loopback, serve_on_loopback};
pub use runtime::on_own_runtime;
pub use shipping::{
    access_log, assert_shipping_metrics, serve_shipping_logs, ship_logs_on_this_thread,
};
