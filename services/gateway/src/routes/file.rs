//! The routes file as written by people and by the operator (a ConfigMap mounted as a
//! directory): YAML, parsed strictly (unknown fields are errors, so a typo never silently
//! drops a protection).
//!
//! ```yaml
//! version: 1
//! global_rate_limit: { name: global, requests: 1000, period_secs: 1, burst: 2000 }
//! routes:
//!   - name: identity
//!     match: { prefix: /identity/ }
//!     rewrite_prefix: /
//!     upstreams: [http://identity:8080]
//!     auth: public
//!   - name: admin
//!     match: { prefix: /admin/, hosts: [api.example.com], methods: [GET, POST] }
//!     upstreams: [http://admin-1:8080, http://admin-2:8080]
//!     balance: least_outstanding
//!     auth: { roles: [admin] }
//!     rate_limit: { name: admin, requests: 10, period_secs: 1, burst: 20 }
//!     timeouts: { connect_ms: 500, first_byte_ms: 5000, total_ms: 30000 }
//!     retry: { attempts: 1, budget_ratio: 0.2 }
//!     max_body_bytes: 65536
//!     cors: { allowed_origins: ["https://app.example.com"], max_age_secs: 600 }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::proxy::Balance;
use crate::ratelimit::RatePolicy;

/// The only version of the format so far.
pub const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// Format version; must be 1.
    pub version: u32,
    /// Applied to every request, per client, before the route's own limit.
    #[serde(default)]
    pub global_rate_limit: Option<RatePolicy>,
    /// The routes; the longest matching prefix wins.
    pub routes: Vec<RouteSpec>,
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Unique name, used in logs, metrics and rate-limit keys.
    pub name: String,
    /// Which requests this route takes.
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// Replaces the matched prefix before forwarding (e.g. `/`); unset keeps the path.
    #[serde(default)]
    pub rewrite_prefix: Option<String>,
    /// Upstream base URLs: `http://host:port` (HTTP/1.1) or `h2c://host:port` (HTTP/2).
    pub upstreams: Vec<String>,
    /// How requests are spread over the upstreams.
    #[serde(default = "default_balance")]
    pub balance: Balance,
    /// Who may call the route.
    pub auth: AuthSpec,
    /// Per-client limit on this route.
    #[serde(default)]
    pub rate_limit: Option<RatePolicy>,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: TimeoutSpec,
    /// Retries of idempotent requests.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Largest request body; larger ones get 413 without reaching the upstream.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Cross-origin access for browsers; unset = no CORS headers.
    #[serde(default)]
    pub cors: Option<CorsSpec>,
}

/// Request matching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Path prefix, starting with `/`. Matches on segment boundaries: `/api` takes `/api`
    /// and `/api/x`, not `/apix`.
    pub prefix: String,
    /// Hosts (without port); empty = any host. A host-specific route beats an any-host
    /// route with the same prefix.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Methods; empty = any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Headers that must be present with exactly these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    /// Anyone; a token, if sent, is passed on unverified (the upstream decides).
    Public,
    /// A valid access token.
    Authenticated,
    /// A valid access token carrying at least one of these roles.
    Roles(Vec<String>),
}

/// Upstream timeouts in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutSpec {
    /// TCP connect.
    pub connect_ms: u64,
    /// Until the response headers arrive.
    pub first_byte_ms: u64,
    /// The whole exchange, body included.
    pub total_ms: u64,
}

impl Default for TimeoutSpec {
    fn default() -> Self {
        Self {
            connect_ms: 1_000,
            first_byte_ms: 15_000,
            total_ms: 30_000,
        }
    }
}

/// Retry policy.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySpec {
    /// Extra attempts for idempotent requests on connect errors, 502 and 503.
    pub attempts: u32,
    /// Retries may be at most this fraction of requests (protects a struggling upstream).
    pub budget_ratio: f64,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            attempts: 1,
            budget_ratio: 0.2,
        }
    }
}

/// CORS settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    /// Exact origins (`https://app.example.com`), or `*` (not with credentials).
    pub allowed_origins: Vec<String>,
    /// Methods allowed in preflight; default GET, POST, PUT, PATCH, DELETE.
    #[serde(default)]
    pub allowed_methods: Vec<String>,
    /// Request headers allowed; default `authorization, content-type`.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Response headers exposed to scripts.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache lifetime.
    #[serde(default = "default_cors_max_age")]
    pub max_age_secs: u32,
    /// Whether cookies/credentials may be sent.
    #[serde(default)]
    pub allow_credentials: bool,
}

fn default_balance() -> Balance {
    Balance::RoundRobin
}

fn default_max_body() -> u64 {
    1024 * 1024
}

fn default_cors_max_age() -> u32 {
    600
}

/// Parses YAML into the file model (shape only; [`super::table`] validates meaning).
pub fn parse(yaml: &str) -> Result<RoutesFile, String> {
    serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
}
