//! The end-to-end harness: starts identity, gateway, profile (and logging) as separate
//! processes from their built binaries, configured exactly as the operator configures
//! their Deployments (same `TESSERA_*` env names, same mounted-file formats in temp
//! dirs), against real PostgreSQL and NATS JetStream. Tests talk to the gateway only.
//!
//! The harness builds nothing: `just e2e` (or `just test`) builds the binaries first.

mod binaries;
mod files;
mod platform;
mod process;

pub use binaries::{bin_dir, binary};
pub use files::{KeysetFile, client_registry_json, random_client_secret, routes_yaml};
pub use platform::{Options, Platform, Service};
pub use process::Process;

/// The `kid` in a compact JWT's header, without verifying anything (tests only look at
/// which key signed a token).
pub fn token_kid(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    json["kid"].as_str().map(str::to_owned)
}
