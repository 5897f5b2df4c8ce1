//! The end-to-end harness: starts identity, profile, gateway (and logging and
//! notification) as separate processes from their built binaries, configured exactly as
//! the operator configures their Deployments (same `TESSERA_*` env names, same
//! mounted-file formats in temp dirs), against real PostgreSQL, a NATS JetStream server
//! and an SMTP server of the platform's own. Tests talk to the gateway only.
//!
//! The harness builds nothing: `just e2e` (or `just test`) builds the binaries first.

mod binaries;
mod client;
mod env;
mod files;
mod metrics;
mod platform;
mod process;
mod service;
mod settle;

pub use binaries::{bin_dir, binary};
pub use client::{Answer, Client, Failure, PASSWORD, Tokens, User, unique_email};
pub use files::{KeysetFile, client_registry_json, random_client_secret, routes_yaml};
pub use platform::Platform;
pub use process::Process;
pub use service::{Options, Postgres, Service};
// The SMTP server and the SMS/push recorder are shared with notification's tests.
pub use testkit::{Mail, Recorded, Recorder, SmtpServer};

/// The `kid` in a compact JWT's header, without verifying anything (tests only look at
/// which key signed a token).
pub fn token_kid(token: &str) -> Option<String> {
    let header = jwt_part(token, 0)?;
    header["kid"].as_str().map(str::to_owned)
}

/// A compact JWT's claims, without verifying anything (tests only read them).
pub fn token_claims(token: &str) -> Option<serde_json::Value> {
    jwt_part(token, 1)
}

fn jwt_part(token: &str, index: usize) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let part = token.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
