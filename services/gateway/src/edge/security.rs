//! The security headers on every answer of the gateway's (see [`secure_response`]).

use http::HeaderValue;
use http::header;

/// `X-Powered-By`, which `http` has no constant for.
static X_POWERED_BY: header::HeaderName = header::HeaderName::from_static("x-powered-by");

/// The security headers on every answer of the gateway's, unless the upstream chose its
/// own: `X-Content-Type-Options: nosniff` (a JSON answer is never sniffed into HTML) and
/// `X-Frame-Options: DENY` (an API answer is never a page to embed), as OWASP's REST
/// security cheat sheet has them. An upstream's `Server` and `X-Powered-By` are removed:
/// they tell an attacker which software runs behind. HSTS is left to the TLS terminator
/// in front (the gateway speaks plain HTTP behind it).
pub(crate) fn secure_response(headers: &mut http::HeaderMap) {
    // One look at the answer's few names (comparisons of known names are cheap) instead
    // of a hashed lookup per header.
    let mut chosen = SecurityChosen::default();
    let mut banner = false;
    for name in headers.keys() {
        chosen.note(name);
        banner |= is_banner(name);
    }
    if banner {
        headers.remove(header::SERVER);
        headers.remove(&X_POWERED_BY);
    }
    for (name, value) in chosen.missing() {
        headers.append(name.clone(), HeaderValue::from_static(value));
    }
}

/// Whether `name` tells which software answered (removed from every answer).
pub(crate) fn is_banner(name: &header::HeaderName) -> bool {
    *name == header::SERVER || *name == X_POWERED_BY
}

/// Which of the security headers an answer already has (the upstream's choice wins).
#[derive(Debug, Default)]
pub(crate) struct SecurityChosen {
    /// The answer has `X-Content-Type-Options`.
    pub(crate) sniffing: bool,
    /// The answer has `X-Frame-Options`.
    pub(crate) framing: bool,
}

impl SecurityChosen {
    pub(crate) fn note(&mut self, name: &header::HeaderName) {
        self.sniffing |= *name == header::X_CONTENT_TYPE_OPTIONS;
        self.framing |= *name == header::X_FRAME_OPTIONS;
    }

    /// The security headers still to add, with their values.
    pub(crate) fn missing(
        &self,
    ) -> impl Iterator<Item = (&'static header::HeaderName, &'static str)> {
        [
            (!self.sniffing).then_some((&header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
            (!self.framing).then_some((&header::X_FRAME_OPTIONS, "DENY")),
        ]
        .into_iter()
        .flatten()
    }

    /// Writes the header lines [`SecurityChosen::missing`] names into an HTTP/1.1 head
    /// (as constants, which the compiler copies inline).
    pub(crate) fn write_missing(&self, out: &mut Vec<u8>) {
        if !self.sniffing {
            out.extend_from_slice(b"x-content-type-options: nosniff\r\n");
        }
        if !self.framing {
            out.extend_from_slice(b"x-frame-options: DENY\r\n");
        }
    }
}
