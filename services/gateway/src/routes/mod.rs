//! Routes as data: the routes file ([`file`]), the validated table and matching
//! ([`table`]), and hot reload — when the file changes on disk it is validated and swapped
//! in atomically; requests in flight finish on the table they started with; an invalid
//! file is refused with one log line and the previous routes stay.

pub mod file;
pub mod table;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use service_kit::CancellationToken;

pub use table::{Route, RouteTable};

use crate::proxy::UpstreamClient;

/// How often the routes file is read for changes. Kubernetes swaps mounted ConfigMaps
/// through a symlink, which file watchers miss; reading a small file each second is cheap.
const POLL: Duration = Duration::from_secs(1);

/// Why a routes file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// The file cannot be read.
    #[error("cannot read the routes file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid; the message names the route and the problem.
    #[error("routes file {path} is invalid: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The current route table, replaced whole on reload.
#[derive(Debug)]
pub struct Routes {
    current: ArcSwap<RouteTable>,
    path: PathBuf,
    client: UpstreamClient,
    max_body_bytes: u64,
}

impl Routes {
    /// Loads the file; an error here stops the gateway at start.
    pub fn load(
        path: PathBuf,
        client: UpstreamClient,
        max_body_bytes: u64,
    ) -> Result<Arc<Self>, RoutesError> {
        let text = std::fs::read_to_string(&path).map_err(|source| RoutesError::Read {
            path: path.clone(),
            source,
        })?;
        let table =
            build(&text, None, &client, max_body_bytes).map_err(|reason| RoutesError::Invalid {
                path: path.clone(),
                reason,
            })?;
        tracing::info!(path = %path.display(), routes = table.len(), "routes loaded");
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(table),
            path,
            client,
            max_body_bytes,
        }))
    }

    /// The table to route one request with.
    pub fn snapshot(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    /// Re-reads the file if its content changed since `last`; returns the content seen.
    fn reload_if_changed(&self, last: &mut Option<String>) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the routes file; keeping the current routes");
                return;
            }
        };
        if last.as_deref() == Some(text.as_str()) {
            return;
        }
        let previous = self.current.load();
        match build(&text, Some(&previous), &self.client, self.max_body_bytes) {
            Ok(table) => {
                tracing::info!(path = %self.path.display(), routes = table.len(), "routes reloaded");
                self.current.store(Arc::new(table));
            }
            Err(reason) => {
                tracing::error!(path = %self.path.display(), %reason, "routes file refused; keeping the current routes");
            }
        }
        *last = Some(text);
    }

    /// Watches the file until `shutdown`.
    pub fn spawn_watch(self: &Arc<Self>, shutdown: CancellationToken) {
        let routes = Arc::clone(self);
        tokio::spawn(async move {
            let mut last = std::fs::read_to_string(&routes.path).ok();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(POLL) => routes.reload_if_changed(&mut last),
                }
            }
        });
    }
}

fn build(
    text: &str,
    previous: Option<&RouteTable>,
    client: &UpstreamClient,
    max_body_bytes: u64,
) -> Result<RouteTable, String> {
    RouteTable::build(file::parse(text)?, previous, client, max_body_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method};

    const ROUTES: &str = r#"
version: 1
routes:
  - name: api
    match: { prefix: /api }
    upstreams: [http://127.0.0.1:1]
    auth: public
  - name: api-admin
    match: { prefix: /api/admin/ }
    rewrite_prefix: /
    upstreams: [http://127.0.0.1:2]
    auth: { roles: [admin] }
  - name: api-v2
    match: { prefix: /api, headers: { x-version: "2" } }
    upstreams: [http://127.0.0.1:3]
    auth: authenticated
  - name: tenant
    match: { prefix: /api, hosts: [tenant.example.com], methods: [GET] }
    upstreams: [h2c://127.0.0.1:4]
    auth: public
"#;

    fn table(text: &str) -> Result<RouteTable, String> {
        build(text, None, &UpstreamClient::new(), 1024 * 1024)
    }

    fn find<'a>(
        t: &'a RouteTable,
        host: Option<&str>,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<&'a str> {
        t.find(host, path, method, headers).map(|r| &*r.name)
    }

    #[tokio::test]
    async fn the_longest_prefix_on_a_segment_boundary_wins() {
        let t = table(ROUTES).expect("valid");
        let none = HeaderMap::new();
        assert_eq!(
            find(&t, None, "/api/admin/users", &Method::GET, &none),
            Some("api-admin")
        );
        assert_eq!(
            find(&t, None, "/api/users", &Method::GET, &none),
            Some("api")
        );
        assert_eq!(find(&t, None, "/api", &Method::GET, &none), Some("api"));
        assert_eq!(find(&t, None, "/apix", &Method::GET, &none), None);
        assert_eq!(find(&t, None, "/other", &Method::GET, &none), None);
    }

    #[tokio::test]
    async fn hosts_methods_and_headers_narrow_a_match() {
        let t = table(ROUTES).expect("valid");
        let none = HeaderMap::new();
        assert_eq!(
            find(
                &t,
                Some("tenant.example.com"),
                "/api/x",
                &Method::GET,
                &none
            ),
            Some("tenant")
        );
        assert_eq!(
            find(
                &t,
                Some("tenant.example.com"),
                "/api/x",
                &Method::POST,
                &none
            ),
            Some("api")
        );
        let mut v2 = HeaderMap::new();
        v2.insert("x-version", "2".parse().expect("value"));
        assert_eq!(find(&t, None, "/api/x", &Method::GET, &v2), Some("api-v2"));
    }

    #[tokio::test]
    async fn a_rewrite_replaces_the_matched_prefix() {
        let t = table(ROUTES).expect("valid");
        let route = t
            .find(None, "/api/admin/users/7", &Method::GET, &HeaderMap::new())
            .expect("route");
        assert_eq!(route.upstream_path("/api/admin/users/7"), "/users/7");
        assert_eq!(route.upstream_path("/api/admin/"), "/");
    }

    #[tokio::test]
    async fn invalid_files_are_refused_with_the_route_and_the_reason() {
        let cases = [
            ("version: 2\nroutes: []", "version 2"),
            (
                "version: 1\nroutes:\n  - { name: a, match: { prefix: api }, upstreams: [http://h:1], auth: public }",
                "route a: prefix",
            ),
            (
                "version: 1\nroutes:\n  - { name: a, match: { prefix: /a }, upstreams: [ftp://h], auth: public }",
                "route a: upstream",
            ),
            (
                "version: 1\nroutes:\n  - { name: a, match: { prefix: /a }, upstreams: [http://h:1], auth: { roles: [] } }",
                "roles",
            ),
            (
                "version: 1\nroutes:\n  - { name: a, match: { prefix: /a }, upstreams: [http://h:1], auth: public, max_body_bytes: 99999999 }",
                "max_body_bytes",
            ),
            (
                "version: 1\nroutes:\n  - { name: a, match: { prefix: /a }, upstreams: [http://h:1], auth: public, typo: 1 }",
                "typo",
            ),
            (
                "version: 1\nroutes:\n  - { name: a, match: { prefix: /a }, upstreams: [http://h:1], auth: public }\n  - { name: a, match: { prefix: /b }, upstreams: [http://h:1], auth: public }",
                "twice",
            ),
            (
                "version: 1\nroutes:\n  - { name: a, match: { prefix: /a }, upstreams: [http://h:1], auth: public, cors: { allowed_origins: ['*'], allow_credentials: true } }",
                "credentials",
            ),
            ("routes: [", ""),
        ];
        for (text, expected) in cases {
            let error = table(text).expect_err(text);
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
        }
    }
}
