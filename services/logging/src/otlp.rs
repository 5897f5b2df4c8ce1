//! OTLP/HTTP logs: decoding a request body (protobuf or JSON, optionally gzip) into the
//! `opentelemetry-proto` messages, and turning those into records to store, with the
//! documented clamps applied (README, "Bad input").

use std::io::Read;
use std::sync::Arc;

use base64::Engine;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Map, Value};

use crate::record::{NewRecord, severity_from_text};

/// Largest request body after gzip decompression: a gzip bomb stops here with 413.
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024;

/// Deepest nesting of arrays and maps converted; deeper values become a placeholder
/// string, so a hostile record cannot exhaust the stack.
const MAX_VALUE_DEPTH: usize = 16;

/// The encodings OTLP/HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// From a `Content-Type` header value; `None` for anything else.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf")
            || essence.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Self::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }

    /// The response content type for this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// `Content-Encoding` other than `gzip` or `identity`.
    #[error("unsupported Content-Encoding {0:?}; use gzip or none")]
    UnsupportedEncoding(String),
    /// The gzip stream is corrupt.
    #[error("the gzip body is corrupt: {0}")]
    Gzip(String),
    /// The body decompresses to more than [`MAX_DECOMPRESSED_BYTES`].
    #[error("the body decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")]
    TooLarge,
    /// Not a valid `ExportLogsServiceRequest`.
    #[error("the body is not a valid OTLP ExportLogsServiceRequest: {0}")]
    Invalid(String),
}

/// Decompresses (when `content_encoding` is gzip) and decodes an export request.
pub fn decode(
    body: &[u8],
    encoding: Encoding,
    content_encoding: Option<&str>,
) -> Result<ExportLogsServiceRequest, DecodeError> {
    let inflated;
    let bytes = match content_encoding.map(str::trim) {
        None | Some("" | "identity") => body,
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            inflated = gunzip(body)?;
            &inflated
        }
        Some(other) => return Err(DecodeError::UnsupportedEncoding(other.to_owned())),
    };
    match encoding {
        Encoding::Protobuf => {
            ExportLogsServiceRequest::decode(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))
        }
        Encoding::Json => {
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))
        }
    }
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

/// Limits applied while converting.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest body kept, in bytes.
    pub max_body_bytes: usize,
    /// Attributes kept per record.
    pub max_attributes: usize,
    /// Timestamps later than now plus this many nanoseconds are clamped.
    pub max_future_nanos: i64,
    /// Timestamps earlier than now minus this many nanoseconds are clamped.
    pub max_past_nanos: i64,
}

/// The records of one request, and those refused.
#[derive(Debug, Default)]
pub struct Converted {
    /// Records to store.
    pub records: Vec<NewRecord>,
    /// How many were refused (OTLP partial success).
    pub rejected: i64,
    /// Why, for the partial-success message (first reason only).
    pub rejection: Option<String>,
}

/// Converts an export request to records, applying `limits` at `now_nanos`.
pub fn convert(request: ExportLogsServiceRequest, limits: Limits, now_nanos: i64) -> Converted {
    let mut out = Converted::default();
    for resource_logs in request.resource_logs {
        let resource_attrs = resource_logs
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        let (resource, _) = attributes(resource_attrs, limits.max_attributes);
        let service = match resource.get("service.name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => "unknown_service".to_owned(),
        };
        let resource_json: Arc<str> = Value::Object(resource).to_string().into();
        for scope_logs in resource_logs.scope_logs {
            for record in scope_logs.log_records {
                match one(record, &service, &resource_json, limits, now_nanos) {
                    Ok(record) => out.records.push(record),
                    Err(reason) => {
                        out.rejected += 1;
                        out.rejection.get_or_insert(reason);
                    }
                }
            }
        }
    }
    out
}

fn one(
    record: opentelemetry_proto::tonic::logs::v1::LogRecord,
    service: &str,
    resource_json: &Arc<str>,
    limits: Limits,
    now: i64,
) -> Result<NewRecord, String> {
    let trace_id = id_hex(&record.trace_id, 16, "trace_id")?;
    let span_id = id_hex(&record.span_id, 8, "span_id")?;
    let (mut attrs, dropped) = attributes(record.attributes, limits.max_attributes);
    let dropped = u64::from(record.dropped_attributes_count) + dropped as u64;
    if dropped > 0 {
        attrs.insert("tessera.dropped_attributes_count".into(), dropped.into());
    }
    let observed = clamp_time(record.observed_time_unix_nano, now, limits).unwrap_or(now);
    let time = match record.time_unix_nano {
        0 => observed,
        t => clamp_time(t, now, limits).unwrap_or_else(|| {
            attrs.insert(
                "tessera.original_time_unix_nano".into(),
                t.to_string().into(),
            );
            observed
        }),
    };
    let mut body = match record.body.and_then(|b| b.value) {
        Some(any_value::Value::StringValue(s)) => s,
        Some(other) => any_to_json(other, 0).to_string(),
        None => record.event_name.clone(),
    };
    if body.len() > limits.max_body_bytes {
        let mut cut = limits.max_body_bytes;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        attrs.insert("tessera.body_original_bytes".into(), body.len().into());
        body.truncate(cut);
        attrs.insert("tessera.body_truncated".into(), true.into());
    }
    let request_id = ["request_id", "http.request.id", "tessera.request_id"]
        .iter()
        .find_map(|key| match attrs.get(*key) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Some(s.clone()),
            _ => None,
        });
    let severity_number = match record.severity_number {
        n @ 1..=24 => n,
        _ => severity_from_text(&record.severity_text),
    };
    Ok(NewRecord {
        time_unix_nano: time,
        observed_time_unix_nano: observed,
        service: service.to_owned(),
        severity_number,
        severity_text: record.severity_text.chars().take(32).collect(),
        body,
        trace_id,
        span_id,
        request_id,
        attributes_json: Value::Object(attrs).to_string(),
        resource_json: resource_json.clone(),
    })
}

/// `Some(t)` when `t` (unsigned nanos) lies within the accepted window around `now`.
fn clamp_time(t: u64, now: i64, limits: Limits) -> Option<i64> {
    let t = i64::try_from(t).ok()?;
    (t > 0
        && t <= now.saturating_add(limits.max_future_nanos)
        && t >= now.saturating_sub(limits.max_past_nanos))
    .then_some(t)
}

/// Lowercase hex of an id of exactly `len` bytes; empty or all-zero ids mean "none".
fn id_hex(bytes: &[u8], len: usize, field: &str) -> Result<Option<String>, String> {
    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if bytes.len() != len {
        return Err(format!(
            "{field} must be {len} bytes, got {} (record rejected)",
            bytes.len()
        ));
    }
    Ok(Some(crate::record::hex(bytes)))
}

/// Up to `max` attributes as a JSON object, and how many were dropped.
fn attributes(list: Vec<KeyValue>, max: usize) -> (Map<String, Value>, usize) {
    let total = list.len();
    let mut map = Map::new();
    for kv in list.into_iter().take(max) {
        let value = kv
            .value
            .and_then(|v| v.value)
            .map_or(Value::Null, |v| any_to_json(v, 0));
        map.insert(kv.key, value);
    }
    (map, total.saturating_sub(max))
}

/// An OTLP value as JSON: strings, numbers and booleans as themselves, arrays and maps
/// recursively, bytes as base64.
fn any_to_json(value: any_value::Value, depth: usize) -> Value {
    if depth > MAX_VALUE_DEPTH {
        return Value::String("(nested too deeply)".into());
    }
    let nested = |v: AnyValue| v.value.map_or(Value::Null, |v| any_to_json(v, depth + 1));
    match value {
        any_value::Value::StringValue(s) => Value::String(s),
        any_value::Value::BoolValue(b) => Value::Bool(b),
        any_value::Value::IntValue(i) => Value::from(i),
        any_value::Value::DoubleValue(d) => serde_json::Number::from_f64(d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        any_value::Value::ArrayValue(a) => Value::Array(a.values.into_iter().map(nested).collect()),
        any_value::Value::KvlistValue(kv) => Value::Object(
            kv.values
                .into_iter()
                .map(|kv| (kv.key, kv.value.map_or(Value::Null, nested)))
                .collect(),
        ),
        any_value::Value::BytesValue(b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::StringValueStrindex(i) => Value::String(format!("(string index {i})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_recognised_with_parameters() {
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..(MAX_DECOMPRESSED_BYTES / (1024 * 1024) + 2) {
            gz.write_all(&zeros).expect("write");
        }
        let bomb = gz.finish().expect("finish");
        assert_eq!(
            decode(&bomb, Encoding::Protobuf, Some("gzip")).err(),
            Some(DecodeError::TooLarge)
        );
    }
}
