//! The gateway's routes file and route matching on arbitrary input: the public parser
//! (`routes::file::parse`) and table builder must answer any YAML with a table or an
//! error, and `RouteTable::find` must answer any host, path and method without panicking.
//!
//! The input is split at the first NUL: YAML before, then request lines (host, path,
//! method) after. Inputs without a NUL are matched against a fixed valid routes file, so
//! the matcher is fuzzed even when the YAML half is rarely valid.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tessera_gateway::proxy::UpstreamClient;
use tessera_gateway::routes::{RouteTable, file};

const FIXED_ROUTES: &str = r#"
version: 1
routes:
  - name: identity
    match: { prefix: /v1/ }
    rewrite_prefix: /
    upstreams: [http://127.0.0.1:1]
    auth: public
  - name: admin
    match: { prefix: /admin/, hosts: [admin.example.com], methods: [GET, POST] }
    upstreams: [http://127.0.0.1:2, h2c://127.0.0.1:4]
    auth: { roles: [admin] }
  - name: root
    match: { prefix: /, headers: { x-tenant: a } }
    upstreams: [http://127.0.0.1:3]
    auth: authenticated
"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    client: UpstreamClient,
    fixed: Option<RouteTable>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let client = UpstreamClient::new();
    // If the fixed file stops being valid the matcher half still runs on fuzzed tables.
    let fixed = file::parse(FIXED_ROUTES)
        .ok()
        .and_then(|f| RouteTable::build(f, None, &client, 1024 * 1024).ok());
    drop(_guard);
    Fixture {
        runtime,
        client,
        fixed,
    }
});

fn probe(table: &RouteTable, requests: &str) {
    let headers = http::HeaderMap::new();
    for line in requests.lines().take(16) {
        let mut parts = line.splitn(3, ' ');
        let host = parts.next().filter(|h| !h.is_empty());
        let path = parts.next().unwrap_or("/");
        let method = parts
            .next()
            .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(http::Method::GET);
        if let Some(route) = table.find(host, path, &method, &headers) {
            let _ = route.upstream_path(path);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _guard = fixture.runtime.enter();
    match text.split_once('\0') {
        Some((yaml, requests)) => {
            let Ok(parsed) = file::parse(yaml) else {
                return;
            };
            if let Ok(table) = RouteTable::build(parsed, None, &fixture.client, 1024 * 1024) {
                probe(&table, requests);
            }
        }
        None => {
            if let Some(table) = &fixture.fixed {
                probe(table, text);
            }
        }
    }
});
