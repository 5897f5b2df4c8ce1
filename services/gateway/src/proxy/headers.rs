//! Header rewriting between client and upstream: hop-by-hop headers (RFC 9110 §7.6.1)
//! are stripped both ways, and the forwarding and propagation headers are set from what
//! the gateway knows rather than what the client claimed.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use service_kit::request_context::{TRACEPARENT, X_REQUEST_ID};

use super::{ForwardContext, RequestIds};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that belong to one connection and never cross the proxy.
fn hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHORIZATION,
        &header::PROXY_AUTHENTICATE,
    ]
}

/// Whether `Connection` lists `token` (tokens are case-insensitive, comma-separated and
/// may span several header lines).
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

/// Whether one `Connection` line's value lists `token`.
pub(crate) fn connection_bytes_have(value: &[u8], token: &str) -> bool {
    bytes_tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(value_tokens)
}

fn value_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    bytes_tokens(value.as_bytes())
}

pub(super) fn bytes_tokens(value: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(value)
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether the request asks for a WebSocket upgrade (`Connection: upgrade` and
/// `Upgrade: websocket`). Other upgrade protocols (h2c, TLS) are not passed through:
/// they change how the gateway itself must speak.
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    // Nearly no request has `Upgrade`: one look at the names before any lookup.
    headers.keys().any(|name| name == header::UPGRADE)
        && connection_has(headers, "upgrade")
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
}

/// Removes hop-by-hop headers, including those `Connection` names. With `upgrade`, the
/// `Upgrade` header and `Connection: upgrade` are kept for the handshake.
///
/// `Content-Length` and `Authorization` are never removed even if `Connection` names
/// them: the first frames the body, the second is what the gateway authenticated and
/// upstreams verify again.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Nearly every message has none: one look at its few names instead of a hashed
    // removal per hop-by-hop name (twice per proxied request).
    if !headers.keys().any(|name| hop_by_hop().contains(&name)) {
        return;
    }
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|name| {
            *name != header::CONTENT_LENGTH
                && *name != header::AUTHORIZATION
                && !(upgrade && *name == header::UPGRADE)
        })
        .collect();
    for name in &named {
        headers.remove(name);
    }
    // `TE: trailers` is end-to-end in meaning (gRPC servers require it over HTTP/2);
    // every other TE value is about this connection's transfer codings.
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in hop_by_hop() {
        if !(upgrade && *name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Prepares a client request's headers for the upstream: hop-by-hop headers stripped,
/// `X-Forwarded-*`, `X-Request-Id` and `traceparent` set from `ctx`. `Host` is set per
/// attempt (it depends on the endpoint).
#[cfg(test)]
pub(crate) fn prepare_request(headers: &mut HeaderMap, ctx: &ForwardContext, upgrade: bool) {
    strip_request(headers, upgrade);
    Forwarding::new(ctx).apply(headers);
}

/// Removes what no upstream gets: hop-by-hop headers, `Expect` and `Forwarded`. The
/// headers [`Forwarding`] sets are left for it to replace.
pub(crate) fn strip_request(headers: &mut HeaderMap, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
    // One look at the request's few names instead of two hashed removals that nearly
    // never find anything.
    let (mut expect, mut forwarded) = (false, false);
    for name in headers.keys() {
        expect |= *name == header::EXPECT;
        forwarded |= *name == header::FORWARDED;
    }
    // The gateway answers `100 Continue` to the client itself when it reads the body;
    // passing `Expect` on would make the upstream send a second, unexpected one.
    if expect {
        headers.remove(header::EXPECT);
    }
    // RFC 7239's `Forwarded` is not set by the gateway; a client-sent one is a claim
    // nobody checked, so it must not reach upstreams that might believe it.
    if forwarded {
        headers.remove(header::FORWARDED);
    }
}

/// The headers the gateway sets on every forwarded request from what it knows, in place
/// of any value the client sent: `X-Forwarded-For` (the trusted chain plus the client),
/// `X-Forwarded-Proto`, `X-Forwarded-Host` (removed when unknown), `X-Request-Id` and
/// `traceparent`. The HTTP/1.1 client writes them straight into the request head and
/// skips the client's; hyper's clients get them set in the header map.
pub(crate) struct Forwarding {
    values: [(&'static HeaderName, Option<HeaderValue>); 3],
    ids: RequestIds,
}

impl Forwarding {
    pub(crate) fn new(ctx: &ForwardContext) -> Self {
        let client = client_value(ctx.client_addr);
        let forwarded_for = match ctx
            .forwarded_for
            .as_deref()
            .map(str::trim)
            .filter(|chain| !chain.is_empty())
        {
            Some(chain) => {
                HeaderValue::from_str(&format!("{chain}, {}", ctx.client_addr)).unwrap_or(client)
            }
            None => client,
        };
        // The usual values without validating and copying them per request.
        let proto = match ctx.proto {
            "http" => Some(HeaderValue::from_static("http")),
            "https" => Some(HeaderValue::from_static("https")),
            other => HeaderValue::from_str(other).ok(),
        };
        Self {
            values: [
                (&X_FORWARDED_FOR, Some(forwarded_for)),
                (&X_FORWARDED_PROTO, proto),
                (&X_FORWARDED_HOST, ctx.host.clone()),
            ],
            ids: ctx.ids.clone(),
        }
    }

    /// Whether `name` is one of the headers set here (the client's value is not sent).
    pub(crate) fn replaces(name: &HeaderName) -> bool {
        // Lengths first: most names differ from all five in length.
        match name.as_str().len() {
            11 => *name == TRACEPARENT,
            12 => *name == X_REQUEST_ID,
            15 => *name == X_FORWARDED_FOR,
            16 => *name == X_FORWARDED_HOST,
            17 => *name == X_FORWARDED_PROTO,
            _ => false,
        }
    }

    /// Writes the headers as HTTP/1.1 header lines into `out` (each name with its colon
    /// a constant, which the compiler copies inline).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        const PREFIXES: [&[u8]; 3] = [
            b"x-forwarded-for: ",
            b"x-forwarded-proto: ",
            b"x-forwarded-host: ",
        ];
        for (prefix, (_, value)) in PREFIXES.iter().zip(&self.values) {
            if let Some(value) = value {
                out.extend_from_slice(prefix);
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(self.ids.request_id.as_bytes());
        out.extend_from_slice(b"\r\ntraceparent: ");
        out.extend_from_slice(&self.ids.trace.text());
        out.extend_from_slice(b"\r\n");
    }

    /// Sets the headers in `headers`, removing the client's values of those not set.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.values {
            match value {
                Some(value) => headers.insert(*name, value.clone()),
                None => headers.remove(*name),
            };
        }
        headers.insert(&X_REQUEST_ID, self.ids.request_id.to_header_value());
        headers.insert(&TRACEPARENT, self.ids.trace.to_header_value());
    }
}

/// Writes the HTTP/1.1 header line `name: value` into `out`.
pub(crate) fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The last client address formatted on this thread: a connection's requests come
    /// from one address, so most requests reuse its header value instead of formatting
    /// and allocating it again.
    static LAST_CLIENT: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// `addr` as a header value.
fn client_value(addr: IpAddr) -> HeaderValue {
    let format = |addr: IpAddr| {
        HeaderValue::from_str(&addr.to_string()).expect("an IP address is a valid header value")
    };
    LAST_CLIENT
        .try_with(|last| {
            let mut last = last.borrow_mut();
            match &*last {
                Some((cached, value)) if *cached == addr => value.clone(),
                _ => {
                    let value = format(addr);
                    *last = Some((addr, value.clone()));
                    value
                }
            }
        })
        .unwrap_or_else(|_| format(addr))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::super::TraceParent;
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    fn ctx(client_addr: IpAddr, forwarded_for: Option<&str>) -> ForwardContext {
        ForwardContext {
            client_addr,
            forwarded_for: forwarded_for.map(str::to_owned),
            proto: "https",
            host: Some(HeaderValue::from_static("api.example.com")),
            ids: RequestIds {
                request_id: HeaderValue::from_static("req-1").into(),
                trace: TraceParent::parse(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .expect("valid"),
            },
            started: std::time::Instant::now(),
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Hop"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-authenticate", "Basic"),
            ("x-hop", "1"),
            ("x-other", "1"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        let names: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn connection_cannot_strip_the_body_length_or_the_credentials() {
        let mut headers = map(&[
            ("connection", "content-length, authorization"),
            ("content-length", "5"),
            ("authorization", "Bearer t"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers["content-length"], "5");
        assert_eq!(headers["authorization"], "Bearer t");
    }

    #[test]
    fn te_trailers_survives_but_other_te_values_do_not() {
        let mut headers = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers["te"], "trailers");
        let mut headers = map(&[("te", "trailers, deflate")]);
        strip_hop_by_hop(&mut headers, false);
        assert!(!headers.contains_key("te"));
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_connection_upgrade_only() {
        let mut headers = map(&[
            ("connection", "Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_websocket_upgrade(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["sec-websocket-key"], "k");
        assert!(!headers.contains_key("x-hop"));
    }

    #[test]
    fn only_websocket_upgrades_are_recognised() {
        assert!(!is_websocket_upgrade(&map(&[
            ("connection", "upgrade"),
            ("upgrade", "h2c")
        ])));
        assert!(!is_websocket_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(is_websocket_upgrade(&map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket")
        ])));
    }

    #[test]
    fn forwarding_headers_append_the_client_to_the_trusted_chain_and_replace_claims() {
        let mut headers = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "gopher"),
            ("forwarded", "for=6.6.6.6"),
            ("x-request-id", "client-chosen"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("expect", "100-continue"),
        ]);
        let ctx = ctx(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
            Some("203.0.113.7"),
        );
        prepare_request(&mut headers, &ctx, false);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 198.51.100.2");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "api.example.com");
        assert_eq!(headers["x-request-id"], "req-1");
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert!(!headers.contains_key("forwarded"));
        assert!(!headers.contains_key("expect"));
    }

    #[test]
    fn the_forwarding_headers_replace_exactly_the_client_s_values_of_their_names() {
        for name in [
            "x-forwarded-for",
            "X-Forwarded-Proto",
            "x-forwarded-host",
            "x-request-id",
            "traceparent",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
            assert!(Forwarding::replaces(&name), "{name}");
        }
        for name in [
            "x-forwarded-port",
            "x-forwarded-prefix",
            "tracestate",
            "x-request-ids",
            "host",
            "forwarded",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
            assert!(!Forwarding::replaces(&name), "{name}");
        }
        // Without a known host, no `X-Forwarded-Host` is sent at all.
        let mut ctx = ctx(IpAddr::V6(Ipv6Addr::LOCALHOST), None);
        ctx.host = None;
        let mut sent = Vec::new();
        Forwarding::new(&ctx).write(&mut sent);
        let sent: Vec<_> = String::from_utf8(sent)
            .expect("text")
            .lines()
            .map(|line| line.split(':').next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            sent,
            [
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-request-id",
                "traceparent"
            ]
        );
    }

    #[test]
    fn without_a_trusted_chain_the_client_address_alone_is_forwarded() {
        let mut headers = map(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-host", "evil")]);
        let mut ctx = ctx(IpAddr::V6(Ipv6Addr::LOCALHOST), None);
        ctx.host = None;
        prepare_request(&mut headers, &ctx, false);
        assert_eq!(headers["x-forwarded-for"], "::1");
        assert!(!headers.contains_key("x-forwarded-host"));
    }
}
