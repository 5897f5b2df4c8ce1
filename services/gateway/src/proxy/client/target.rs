//! An endpoint's address, parsed once: protocol, authority, base path and `Host` value,
//! and the request targets built from them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};

use super::super::UpstreamConfigError;

/// How an endpoint is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    H2c,
}

/// One endpoint's address, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The endpoint as written (`http://host:port/base`), for logs and outcomes; made
    /// once, cloned per request without copying.
    label: Arc<str>,
    pub(super) protocol: Protocol,
    pub(super) authority: Authority,
    /// The authority's key in the connection pools (see [`pool_key`]).
    pub(super) pool: u64,
    /// The endpoint's path without a trailing slash; empty for none.
    pub(super) base_path: String,
    pub(super) host: HeaderValue,
}

impl Target {
    pub(crate) fn parse(uri: &Uri) -> Result<Self, UpstreamConfigError> {
        let endpoint = uri.to_string();
        let protocol = match uri.scheme_str() {
            Some("http") => Protocol::Http1,
            Some("h2c") => Protocol::H2c,
            _ => return Err(UpstreamConfigError::UnsupportedScheme { endpoint }),
        };
        let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()).cloned() else {
            return Err(UpstreamConfigError::MissingAuthority { endpoint });
        };
        if uri.query().is_some() {
            return Err(UpstreamConfigError::EndpointQuery { endpoint });
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| UpstreamConfigError::MissingAuthority { endpoint })?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let scheme = match protocol {
            Protocol::Http1 => "http",
            Protocol::H2c => "h2c",
        };
        Ok(Self {
            label: format!("{scheme}://{authority}{base_path}").into(),
            protocol,
            pool: pool_key(&authority),
            authority,
            base_path,
            host,
        })
    }

    /// The endpoint as written, shared.
    pub(crate) fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The origin-form URI (`/path?query`) of `uri` on this endpoint, for HTTP/1.1;
    /// `None` when `uri` already is that (no base path, origin form), which spares a
    /// copy on the common path.
    pub(super) fn origin_form(&self, uri: &Uri) -> Result<Option<Uri>, http::Error> {
        let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
        // `OPTIONS *` and other non-origin forms have no meaning under a base path.
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            "/"
        };
        if self.base_path.is_empty() {
            if uri.scheme().is_none() && uri.authority().is_none() && uri.path().starts_with('/') {
                return Ok(None);
            }
            return Uri::builder()
                .path_and_query(path_and_query)
                .build()
                .map(Some);
        }
        Uri::builder()
            .path_and_query(format!("{}{path_and_query}", self.base_path))
            .build()
            .map(Some)
    }

    /// The absolute `http://` URI of `path_and_query` on this endpoint.
    pub(super) fn uri_for(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        // `OPTIONS *` and other non-origin forms have no meaning under a base path.
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            "/"
        };
        let builder = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone());
        if self.base_path.is_empty() {
            builder.path_and_query(path_and_query).build()
        } else {
            builder
                .path_and_query(format!("{}{path_and_query}", self.base_path))
                .build()
        }
    }
}

/// The pool key of `authority`: one number per authority ever configured (names
/// compared as `Authority` does, ignoring case), so that upstreams naming the same
/// endpoint share its connections and the per-request pool lookups compare integers
/// rather than host names.
fn pool_key(authority: &Authority) -> u64 {
    static KEYS: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Mutex::default);
    let mut keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
    let next = keys.len() as u64;
    *keys
        .entry(authority.as_str().to_ascii_lowercase())
        .or_insert(next)
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Result<Target, UpstreamConfigError> {
        Target::parse(&uri.parse().expect("uri"))
    }

    #[test]
    fn request_paths_are_appended_to_the_endpoint_base_path() {
        let t = target("http://users:8080/api/").expect("valid");
        assert_eq!(
            t.uri_for("/v1/me?x=1").expect("uri").to_string(),
            "http://users:8080/api/v1/me?x=1"
        );
        let t = target("h2c://users:8080").expect("valid");
        assert_eq!(
            t.uri_for("/").expect("uri").to_string(),
            "http://users:8080/"
        );
        assert_eq!(t.to_string(), "h2c://users:8080");
    }

    #[test]
    fn http1_requests_go_out_in_origin_form_under_the_base_path() {
        let origin = |endpoint: &str, uri: &str| {
            target(endpoint)
                .expect("valid")
                .origin_form(&uri.parse().expect("uri"))
                .expect("origin form")
                .map(|uri| uri.to_string())
        };
        // Already origin form without a base path: sent as is, nothing rebuilt.
        assert_eq!(origin("http://users:8080", "/v1/me?x=1"), None);
        // Absolute form from the client is never passed on.
        assert_eq!(
            origin("http://users:8080", "http://evil.example/v1/me?x=1").as_deref(),
            Some("/v1/me?x=1")
        );
        assert_eq!(
            origin("http://users:8080/api/", "/v1/me?x=1").as_deref(),
            Some("/api/v1/me?x=1")
        );
        assert_eq!(origin("http://users:8080", "*").as_deref(), Some("/"));
    }

    #[test]
    fn endpoints_must_be_http_or_h2c_with_a_host_and_no_query() {
        assert!(matches!(
            target("https://users:8443"),
            Err(UpstreamConfigError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            target("/relative"),
            Err(UpstreamConfigError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            target("http://users/?a=b"),
            Err(UpstreamConfigError::EndpointQuery { .. })
        ));
    }
}
