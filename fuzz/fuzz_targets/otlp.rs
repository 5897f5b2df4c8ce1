//! The logging service's OTLP/HTTP body decoding on arbitrary bytes: `otlp::decode` for
//! protobuf and JSON, plain and gzip, then `otlp::convert` of whatever decoded, must
//! answer with records or an error, never panic.
//!
//! The first byte picks the encoding (bit 0: protobuf or JSON) and the content encoding
//! (bit 1: gzip or none); the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_logging::otlp::{self, Encoding, Limits};

const LIMITS: Limits = Limits {
    max_body_bytes: 16 * 1024,
    max_attributes: 64,
    max_future_nanos: 3_600_000_000_000,
    max_past_nanos: 86_400_000_000_000,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let encoding = if mode & 1 == 0 {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let content_encoding = (mode & 2 != 0).then_some("gzip");
    if let Ok(request) = otlp::decode(body, encoding, content_encoding) {
        // Around 2026-01-01, as nanoseconds since the epoch.
        let _ = otlp::convert(request, LIMITS, 1_767_225_600_000_000_000);
    }
});
