//! W3C Trace Context (`traceparent`) parsing and propagation.
//!
//! Only the header is needed to join one request's log records across services; the
//! OpenTelemetry SDK crates would add a tracer pipeline Tessera does not run, so the
//! 55-character header is handled here, strictly per the W3C grammar (version 00).

use std::fmt;

/// The trace a request belongs to and this service's span in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    sampled: bool,
}

impl TraceContext {
    /// Starts a new trace (no valid incoming `traceparent`).
    pub fn new_root() -> Self {
        let mut trace_id = [0u8; 16];
        // All-zero ids are invalid; the chance is negligible but the spec forbids it.
        while trace_id == [0; 16] {
            rand::fill(&mut trace_id[..]);
        }
        Self {
            trace_id,
            span_id: new_span_id(),
            parent_span_id: None,
            sampled: true,
        }
    }

    /// Continues the caller's trace with a new span of our own, or `None` when the header
    /// is not a valid version-00 `traceparent`.
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let (trace_id, parent_span_id, sampled) = parse_traceparent(header)?;
        Some(Self {
            trace_id,
            span_id: new_span_id(),
            parent_span_id: Some(parent_span_id),
            sampled,
        })
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> String {
        encode_hex(&self.trace_id)
    }

    /// This service's 16-hex-digit span id.
    pub fn span_id(&self) -> String {
        encode_hex(&self.span_id)
    }

    /// The caller's span id, when the trace came from outside.
    pub fn parent_span_id(&self) -> Option<String> {
        self.parent_span_id.map(|id| encode_hex(&id))
    }

    /// The `traceparent` value to send on calls made while handling this request: the
    /// callee's parent is our span.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id(),
            self.span_id(),
            u8::from(self.sampled)
        )
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

/// The trace id, parent span id and sampled flag of a valid version-00 `traceparent`,
/// strictly per the W3C grammar (lowercase hex, no all-zero ids); `None` otherwise. For
/// callers that need the ids without a span of their own (the gateway's data path).
pub fn parse_traceparent(header: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = header.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" {
        return None;
    }
    let trace_id: [u8; 16] = decode_hex(trace)?;
    let parent_span_id: [u8; 8] = decode_hex(parent)?;
    let [flags]: [u8; 1] = decode_hex(flags)?;
    if trace_id == [0; 16] || parent_span_id == [0; 8] {
        return None;
    }
    Some((trace_id, parent_span_id, flags & 1 == 1))
}

fn new_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    while id == [0; 8] {
        rand::fill(&mut id[..]);
    }
    id
}

/// Decodes exactly `N` bytes of lowercase hex (the spec forbids uppercase).
fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn encode_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_keeps_the_trace_and_gets_a_new_span() {
        let ctx = TraceContext::from_traceparent(EXAMPLE).expect("valid");
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id().as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(ctx.span_id(), "00f067aa0ba902b7");
        assert!(
            ctx.traceparent()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
        assert!(ctx.traceparent().ends_with("-01"));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(
                TraceContext::from_traceparent(bad),
                None,
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn a_root_context_formats_as_a_parseable_traceparent() {
        let root = TraceContext::new_root();
        let child = TraceContext::from_traceparent(&root.traceparent()).expect("round trip");
        assert_eq!(child.trace_id(), root.trace_id());
        assert_eq!(child.parent_span_id(), Some(root.span_id()));
    }
}
