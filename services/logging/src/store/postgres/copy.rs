//! PostgreSQL's binary `COPY` format for a batch of records: no parameter limit and no
//! per-row statement work on the server.

use crate::record::{NewRecord, lookup_key};

/// The binary COPY statement; column order matches [`encode_copy`].
pub(super) const COPY: &str = "COPY log_records (id, ts, observed_ts, service, severity_number, \
     severity_text, body, trace_id, span_id, request_id, trace_key, request_key, attributes, \
     resource) FROM STDIN (FORMAT binary)";

/// Columns per row in [`COPY`].
const COPY_COLUMNS: i16 = 14;

/// The text PostgreSQL stores for `v`: text cannot hold NUL (OTLP strings can). The
/// text blocks read bodies through this too, so their lexemes are those of the stored
/// body.
pub(super) fn pg_text(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains('\0') {
        std::borrow::Cow::Owned(v.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// `records` with `ids` in PostgreSQL's binary COPY format: a header, per row the field
/// count and each field as a length (-1 for NULL) and its bytes (big-endian integers,
/// UTF-8 text, `jsonb` as version 1 and the JSON text), and a trailer.
pub(super) fn encode_copy(records: &[NewRecord], ids: &[i64]) -> Vec<u8> {
    fn int8(out: &mut Vec<u8>, v: i64) {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
    fn opt_int8(out: &mut Vec<u8>, v: Option<i64>) {
        match v {
            Some(v) => int8(out, v),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    fn len(n: usize) -> [u8; 4] {
        i32::try_from(n).unwrap_or(i32::MAX).to_be_bytes()
    }
    // jsonb cannot hold the `\u0000` escape either.
    fn text(out: &mut Vec<u8>, v: &str) {
        let v = pg_text(v);
        out.extend_from_slice(&len(v.len()));
        out.extend_from_slice(v.as_bytes());
    }
    fn opt_text(out: &mut Vec<u8>, v: Option<&str>) {
        match v {
            Some(v) => text(out, v),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    fn jsonb(out: &mut Vec<u8>, v: &str) {
        let cleaned;
        let v = if v.contains("\\u0000") {
            cleaned = v.replace("\\u0000", "\\ufffd");
            cleaned.as_str()
        } else {
            v
        };
        out.extend_from_slice(&len(v.len() + 1));
        out.push(1);
        out.extend_from_slice(v.as_bytes());
    }
    let estimate: usize = records
        .iter()
        .map(|r| 160 + r.body.len() + r.attributes_json.len() + r.resource_json.len())
        .sum();
    let mut out = Vec::with_capacity(estimate + 32);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for (r, id) in records.iter().zip(ids) {
        out.extend_from_slice(&COPY_COLUMNS.to_be_bytes());
        int8(&mut out, *id);
        int8(&mut out, r.time_unix_nano);
        int8(&mut out, r.observed_time_unix_nano);
        text(&mut out, &r.service);
        out.extend_from_slice(&4i32.to_be_bytes());
        out.extend_from_slice(&r.severity_number.to_be_bytes());
        text(&mut out, &r.severity_text);
        text(&mut out, &r.body);
        opt_text(&mut out, r.trace_id.as_deref());
        opt_text(&mut out, r.span_id.as_deref());
        opt_text(&mut out, r.request_id.as_deref());
        opt_int8(&mut out, r.trace_id.as_deref().map(lookup_key));
        opt_int8(&mut out, r.request_id.as_deref().map(lookup_key));
        jsonb(&mut out, &r.attributes_json);
        jsonb(&mut out, &r.resource_json);
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}
