//! The propagation headers of a forwarded request, `X-Request-Id` and `traceparent`,
//! kept as the ids themselves: the HTTP/1.1 heads (the upstream request, the client's
//! answer) get them written as text straight into their buffers, and only hyper's paths
//! turn them into `HeaderValue`s. Made as header values, they cost two validations, an
//! allocation and its reference counts per request (bench/README.md, gateway,
//! session 8).

use std::fmt;

use http::HeaderValue;
use service_kit::RequestContext;
use service_kit::trace_context;

/// The propagation headers of one request.
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// The `X-Request-Id` value.
    pub request_id: RequestId,
    /// The `traceparent` naming the gateway's span as the callee's parent.
    pub trace: TraceParent,
}

impl From<&RequestContext> for RequestIds {
    /// The ids of a request served through the kit's layers (which made the context).
    fn from(context: &RequestContext) -> Self {
        let request_id = HeaderValue::from_str(&context.request_id)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Self {
            request_id: RequestId::Caller(request_id),
            trace: TraceParent::parse(&context.trace.traceparent())
                .expect("the kit formats valid traceparents"),
        }
    }
}

/// An `X-Request-Id`: one the caller sent, or a UUID the gateway made (its hyphenated
/// text, made once).
#[derive(Clone)]
pub enum RequestId {
    /// The caller's value, kept.
    Caller(HeaderValue),
    /// A UUID made by the gateway.
    Made(MadeId),
}

/// The hyphenated lowercase text of a UUID the gateway made.
#[derive(Debug, Clone, Copy)]
pub struct MadeId([u8; uuid::fmt::Hyphenated::LENGTH]);

impl MadeId {
    /// The text of `uuid`.
    pub fn new(uuid: uuid::Uuid) -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid.hyphenated().encode_lower(&mut text);
        Self(text)
    }
}

impl RequestId {
    /// The value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Caller(value) => value.as_bytes(),
            Self::Made(MadeId(text)) => text,
        }
    }

    /// The value as text (a caller's value that is not visible ASCII is refused before
    /// it becomes an id, so this is never empty in practice).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The value as a header value, for hyper's paths.
    pub fn to_header_value(&self) -> HeaderValue {
        match self {
            Self::Caller(value) => value.clone(),
            Self::Made(MadeId(text)) => {
                HeaderValue::from_bytes(text).expect("a hyphenated UUID is a valid header value")
            }
        }
    }
}

impl From<HeaderValue> for RequestId {
    fn from(value: HeaderValue) -> Self {
        Self::Caller(value)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version-00 W3C `traceparent`: `00-<trace id>-<parent id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// Length of the text.
    pub const LEN: usize = 55;

    /// A valid version-00 `traceparent` (as the kit parses it).
    pub fn parse(text: &str) -> Option<Self> {
        trace_context::parse_traceparent(text).map(|(trace_id, parent_id, sampled)| Self {
            trace_id,
            parent_id,
            sampled,
        })
    }

    /// The text.
    pub fn text(&self) -> [u8; Self::LEN] {
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex(&self.trace_id, &mut text[3..35]);
        hex(&self.parent_id, &mut text[36..52]);
        if self.sampled {
            text[54] = b'1';
        }
        text
    }

    /// The text as a header value, for hyper's paths.
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.text()).expect("a traceparent is a valid header value")
    }
}

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

/// Writes the lowercase hex of `bytes` into `out` (twice as long).
pub(crate) fn hex(bytes: &[u8], out: &mut [u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn a_traceparent_reads_back_as_it_was_written() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(text).expect("valid");
        assert_eq!(&parsed.text(), text.as_bytes());
        assert_eq!(parsed.to_header_value(), text);
        let unsampled = TraceParent {
            sampled: false,
            ..parsed
        };
        assert!(unsampled.text().ends_with(b"-00"));
    }

    #[test]
    fn every_byte_has_its_two_hex_digits() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut out = vec![0; 512];
        hex(&bytes, &mut out);
        let expected = bytes.iter().fold(String::new(), |mut text, b| {
            write!(text, "{b:02x}").expect("writing to a String");
            text
        });
        assert_eq!(String::from_utf8(out).expect("hex"), expected);
    }

    #[test]
    fn a_made_request_id_is_its_uuid_text() {
        let uuid = uuid::Uuid::now_v7();
        let id = RequestId::Made(MadeId::new(uuid));
        assert_eq!(id.as_str(), uuid.hyphenated().to_string());
        assert_eq!(id.to_header_value(), uuid.hyphenated().to_string().as_str());
    }
}
