//! An HTTP/1.1 upstream's answer head relayed as received (session 8): the lines are
//! not parsed into a `HeaderMap`; those that never cross the gateway are left out when
//! the lines are written to the client or merged into a map for hyper.

use http::HeaderMap;

use super::headers::bytes_tokens;
use crate::http1::RawHeaders;

/// Whether the `Connection` lines of `headers` list `token`.
pub(crate) fn raw_connection_has(headers: &RawHeaders, token: &str) -> bool {
    headers
        .values("connection")
        .flat_map(bytes_tokens)
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// An HTTP/1.1 upstream's answer head relayed as received, without a map: the lines
/// the client gets are those [`RelayedHeaders::lines`] yields, hop-by-hop lines left out
/// as [`strip_hop_by_hop`](super::headers::strip_hop_by_hop) removes them from a map. Only for heads whose `Connection`
/// lines name nothing beyond `close` and `keep-alive` (see [`RelayedHeaders::new`]).
#[derive(Debug, Clone)]
pub(crate) struct RelayedHeaders {
    raw: RawHeaders,
    /// `Content-Length` is left out (it stood beside `Transfer-Encoding`).
    drop_length: bool,
    /// `Connection` lists `close`, so a field named `Close` is left out too (RFC 9110
    /// §7.6.1: every field `Connection` names is this connection's).
    drop_close: bool,
}

impl RelayedHeaders {
    /// `raw` for relaying, leaving out its `Content-Length` when `drop_length`; `Err`
    /// gives `raw` back when its `Connection` lines (`connection`: whether it has any)
    /// name other headers to remove (a map strips those, [`strip_hop_by_hop`](super::headers::strip_hop_by_hop)).
    pub(crate) fn new(
        raw: RawHeaders,
        drop_length: bool,
        connection: bool,
    ) -> Result<Self, RawHeaders> {
        let (mut drop_close, mut names_others) = (false, false);
        let tokens = connection.then(|| raw.values("connection").flat_map(bytes_tokens));
        for token in tokens.into_iter().flatten() {
            if token.eq_ignore_ascii_case("close") {
                drop_close = true;
            } else {
                names_others |= !token.eq_ignore_ascii_case("keep-alive");
            }
        }
        if names_others {
            return Err(raw);
        }
        Ok(Self {
            raw,
            drop_length,
            drop_close,
        })
    }

    /// The lines the client may get: names as received (in any case) and values.
    pub(crate) fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.raw
            .iter()
            .filter(|&(name, value)| self.relayed(name, value))
    }

    /// Appends the relayed lines to `headers`.
    pub(crate) fn append_to(&self, headers: &mut HeaderMap) {
        self.raw
            .append_to(headers, |name, value| self.relayed(name, value));
    }

    fn relayed(&self, name: &[u8], value: &[u8]) -> bool {
        if self.drop_length && name.eq_ignore_ascii_case(b"content-length")
            || self.drop_close && name.eq_ignore_ascii_case(b"close")
        {
            return false;
        }
        // `TE: trailers` is end-to-end in meaning, as in `strip_hop_by_hop`.
        !is_hop_by_hop_name(name)
            || name.eq_ignore_ascii_case(b"te") && value.eq_ignore_ascii_case(b"trailers")
    }
}

/// Whether `name` (in any case) is one of the hop-by-hop names `strip_hop_by_hop` removes.
fn is_hop_by_hop_name(name: &[u8]) -> bool {
    // Lengths first: most names differ from all of them in length.
    let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 => is(b"te"),
        7 => is(b"trailer") || is(b"upgrade"),
        10 => is(b"connection") || is(b"keep-alive"),
        16 => is(b"proxy-connection"),
        17 => is(b"transfer-encoding"),
        18 => is(b"proxy-authenticate"),
        19 => is(b"proxy-authorization"),
        _ => false,
    }
}
