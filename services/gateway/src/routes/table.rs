//! The validated route table and request matching: by host, longest path prefix on a
//! segment boundary, then optional method and header conditions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::file::{AuthSpec, CorsSpec, RouteSpec, RoutesFile, VERSION};
use crate::proxy::{RetryPolicy, Timeouts, Upstream, UpstreamClient, UpstreamConfig};
use crate::ratelimit::RatePolicy;

/// Consecutive failures that eject an upstream endpoint, and for how long.
const EJECT_AFTER_FAILURES: u32 = 5;
const EJECTION: Duration = Duration::from_secs(30);
/// The circuit of an upstream opens when half of at least 20 recent requests failed, for
/// 10 s, then lets a probe through.
const BREAKER_FAILURE_RATIO: f64 = 0.5;
const BREAKER_MIN_REQUESTS: u32 = 20;
const BREAKER_OPEN_FOR: Duration = Duration::from_secs(10);

/// A route ready to serve.
#[derive(Debug)]
pub struct Route {
    /// Shared with every response's metrics label, so labelling allocates nothing.
    pub name: Arc<str>,
    pub prefix: String,
    pub hosts: Vec<String>,
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub rewrite_prefix: Option<String>,
    pub upstream: Arc<Upstream>,
    pub auth: AuthSpec,
    pub rate_limit: Option<RatePolicy>,
    pub max_body_bytes: u64,
    pub cors: Option<CorsSpec>,
}

impl Route {
    /// The path to send upstream for `path` (which this route matched).
    pub fn upstream_path(&self, path: &str) -> String {
        match &self.rewrite_prefix {
            None => path.to_owned(),
            Some(replacement) => {
                let rest = path
                    .strip_prefix(self.prefix.trim_end_matches('/'))
                    .unwrap_or(path);
                let rest = rest.trim_start_matches('/');
                let base = replacement.trim_end_matches('/');
                if rest.is_empty() {
                    format!("{base}/")
                } else {
                    format!("{base}/{rest}")
                }
            }
        }
    }

    fn path_matches(&self, path: &str) -> bool {
        let prefix = self.prefix.trim_end_matches('/');
        prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    fn conditions_match(&self, method: &Method, headers: &http::HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self
                .headers
                .iter()
                .all(|(name, value)| headers.get(name) == Some(value))
    }
}

/// Every route, ordered for matching.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Most specific first: longer prefix, then host-specific before any-host.
    routes: Vec<Arc<Route>>,
    /// Per-client limit applied to every request.
    pub global_rate_limit: Option<RatePolicy>,
}

impl RouteTable {
    /// Validates `file` and builds the table. Upstreams of routes whose upstream settings
    /// did not change are taken over from `previous`, so a reload keeps their connection
    /// pools, ejections and circuit state.
    pub fn build(
        file: RoutesFile,
        previous: Option<&RouteTable>,
        client: &UpstreamClient,
        max_body_bytes: u64,
    ) -> Result<Self, String> {
        if file.version != VERSION {
            return Err(format!(
                "version {} is not supported (expected {VERSION})",
                file.version
            ));
        }
        if let Some(policy) = &file.global_rate_limit {
            policy
                .validate()
                .map_err(|e| format!("global_rate_limit: {e}"))?;
        }
        let reusable: HashMap<&str, &Arc<Upstream>> = previous
            .map(|t| t.routes.iter().map(|r| (&*r.name, &r.upstream)).collect())
            .unwrap_or_default();
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        let mut routes = Vec::with_capacity(file.routes.len());
        for spec in file.routes {
            let name = spec.name.clone();
            let route = compile(spec, max_body_bytes, &reusable, client)
                .map_err(|e| format!("route {name}: {e}"))?;
            if !names.insert(route.name.clone()) {
                return Err(format!("route {name}: the name is used twice"));
            }
            let key = (
                route.prefix.clone(),
                route.hosts.clone(),
                route.methods.clone(),
                format!("{:?}", route.headers),
            );
            if !keys.insert(key) {
                return Err(format!("route {name}: another route has the same match"));
            }
            routes.push(Arc::new(route));
        }
        routes.sort_by(|a, b| {
            let a_key = (
                a.prefix.trim_end_matches('/').len(),
                !a.hosts.is_empty(),
                a.methods.len() + a.headers.len(),
            );
            let b_key = (
                b.prefix.trim_end_matches('/').len(),
                !b.hosts.is_empty(),
                b.methods.len() + b.headers.len(),
            );
            b_key.cmp(&a_key)
        });
        Ok(Self {
            routes,
            global_rate_limit: file.global_rate_limit,
        })
    }

    /// The route for a request, if any. `host` is without port, lowercased.
    pub fn find(
        &self,
        host: Option<&str>,
        path: &str,
        method: &Method,
        headers: &http::HeaderMap,
    ) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| {
            (route.hosts.is_empty() || host.is_some_and(|h| route.hosts.iter().any(|r| r == h)))
                && route.path_matches(path)
                && route.conditions_match(method, headers)
        })
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn compile(
    spec: RouteSpec,
    max_body_bytes: u64,
    reusable: &HashMap<&str, &Arc<Upstream>>,
    client: &UpstreamClient,
) -> Result<Route, String> {
    let valid_name = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if !valid_name {
        return Err("the name must be 1-64 letters, digits, - or _".into());
    }
    let config = upstream_config(&spec)?;
    let prefix = spec.matcher.prefix;
    if !prefix.starts_with('/')
        || prefix.contains("//")
        || prefix.split('/').any(|s| s == ".." || s == ".")
    {
        return Err(format!(
            "prefix {prefix:?} must start with / and have no empty, . or .. segments"
        ));
    }
    if let Some(rewrite) = &spec.rewrite_prefix
        && !rewrite.starts_with('/')
    {
        return Err(format!("rewrite_prefix {rewrite:?} must start with /"));
    }
    let methods = spec
        .matcher
        .methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("method {m:?} is not valid"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers = header_conditions(&spec.matcher.headers)?;
    let hosts = spec
        .matcher
        .hosts
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if let AuthSpec::Roles(roles) = &spec.auth
        && roles.is_empty()
    {
        return Err("auth roles must list at least one role".into());
    }
    if let Some(policy) = &spec.rate_limit {
        policy.validate().map_err(|e| format!("rate_limit: {e}"))?;
    }
    if spec.max_body_bytes > max_body_bytes {
        return Err(format!(
            "max_body_bytes {} exceeds the gateway's --max-body-bytes {max_body_bytes}",
            spec.max_body_bytes
        ));
    }
    if let Some(cors) = &spec.cors {
        validate_cors(cors)?;
    }
    let upstream = match reusable.get(spec.name.as_str()) {
        Some(existing) if *existing.config() == config => Arc::clone(existing),
        _ => Upstream::new(config, client.clone()),
    };
    Ok(Route {
        name: spec.name.into(),
        prefix,
        hosts,
        methods,
        headers,
        rewrite_prefix: spec.rewrite_prefix,
        upstream,
        auth: spec.auth,
        rate_limit: spec.rate_limit,
        max_body_bytes: spec.max_body_bytes,
        cors: spec.cors,
    })
}

fn header_conditions(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("header value {value:?} is not valid"))?;
            Ok((name, value))
        })
        .collect()
}

fn validate_cors(cors: &CorsSpec) -> Result<(), String> {
    if cors.allowed_origins.is_empty() {
        return Err("cors.allowed_origins is empty".into());
    }
    if cors.allow_credentials && cors.allowed_origins.iter().any(|o| o == "*") {
        return Err("cors: `*` origins cannot be combined with allow_credentials".into());
    }
    for origin in &cors.allowed_origins {
        if origin != "*" && !(origin.starts_with("https://") || origin.starts_with("http://")) {
            return Err(format!(
                "cors origin {origin:?} must be `*` or a scheme://host[:port]"
            ));
        }
    }
    Ok(())
}

fn upstream_config(spec: &RouteSpec) -> Result<UpstreamConfig, String> {
    if spec.upstreams.is_empty() {
        return Err("at least one upstream is required".into());
    }
    let endpoints = spec
        .upstreams
        .iter()
        .map(|u| {
            let uri: http::Uri = u
                .parse()
                .map_err(|_| format!("upstream {u:?} is not a URL"))?;
            let scheme_ok = matches!(uri.scheme_str(), Some("http" | "h2c"));
            if !scheme_ok || uri.authority().is_none() {
                return Err(format!(
                    "upstream {u:?} must be http://host:port or h2c://host:port"
                ));
            }
            Ok(uri)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let t = spec.timeouts;
    if t.connect_ms == 0 || t.first_byte_ms == 0 || t.total_ms < t.first_byte_ms {
        return Err("timeouts must be positive and total_ms >= first_byte_ms".into());
    }
    if !(0.0..=1.0).contains(&spec.retry.budget_ratio) || spec.retry.attempts > 5 {
        return Err("retry.attempts must be 0-5 and retry.budget_ratio between 0 and 1".into());
    }
    let config = UpstreamConfig {
        endpoints,
        balance: spec.balance,
        timeouts: Timeouts {
            connect: Duration::from_millis(t.connect_ms),
            first_byte: Duration::from_millis(t.first_byte_ms),
            total: Duration::from_millis(t.total_ms),
        },
        retry: RetryPolicy {
            attempts: spec.retry.attempts,
            budget_ratio: spec.retry.budget_ratio,
        },
        eject_after_failures: EJECT_AFTER_FAILURES,
        ejection: EJECTION,
        breaker_failure_ratio: BREAKER_FAILURE_RATIO,
        breaker_min_requests: BREAKER_MIN_REQUESTS,
        breaker_open_for: BREAKER_OPEN_FOR,
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
