//! A stored log record (one row), its severity scale, and the short lookup keys that
//! let trace-id and request-id queries use a small integer index.

use serde::Serialize;
use serde_json::{Map, Value};

/// One log record as stored and returned by the query API.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LogRow {
    /// Assigned by the database; with `time_unix_nano` it orders records.
    pub id: i64,
    /// When the event happened, nanoseconds since the Unix epoch (clamped, see README).
    pub time_unix_nano: i64,
    /// When a collector or this service first saw it.
    pub observed_time_unix_nano: i64,
    /// The `service.name` resource attribute.
    pub service: String,
    /// OTLP severity number (1–24; 0 unspecified).
    pub severity_number: i32,
    /// Severity as the sender named it (`INFO`, `warn`, ...).
    pub severity_text: String,
    /// The message.
    pub body: String,
    /// 32 hex digits, or absent.
    pub trace_id: Option<String>,
    /// 16 hex digits, or absent.
    pub span_id: Option<String>,
    /// The request id (attribute `request_id`), or absent.
    pub request_id: Option<String>,
    /// The record's attributes.
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// The resource's attributes (`service.name`, `host.name`, ...).
    #[schema(value_type = Object)]
    pub resource: Map<String, Value>,
}

/// A record ready to insert (no id yet).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub time_unix_nano: i64,
    pub observed_time_unix_nano: i64,
    pub service: String,
    pub severity_number: i32,
    pub severity_text: String,
    pub body: String,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub request_id: Option<String>,
    /// The attributes as stored (a JSON object), serialised by the request handler so
    /// the single writer only copies bytes.
    pub attributes_json: String,
    /// Shared by every record of one OTLP resource, serialised once.
    pub resource_json: std::sync::Arc<str>,
}

impl NewRecord {
    /// The row this record becomes once the database gives it `id`.
    pub fn into_row(self, id: i64) -> LogRow {
        let resource = serde_json::from_str(&self.resource_json).unwrap_or_default();
        let attributes = serde_json::from_str(&self.attributes_json).unwrap_or_default();
        LogRow {
            id,
            time_unix_nano: self.time_unix_nano,
            observed_time_unix_nano: self.observed_time_unix_nano,
            service: self.service,
            severity_number: self.severity_number,
            severity_text: self.severity_text,
            body: self.body,
            trace_id: self.trace_id,
            span_id: self.span_id,
            request_id: self.request_id,
            attributes,
            resource,
        }
    }
}

/// The lookup key of a trace id or request id: the first 8 bytes of a FNV-1a hash as a
/// signed integer. An index on this column costs a fraction of an index on the 32-hex
/// text (see README, "Indexes"); queries compare the full id as well, so collisions
/// only cost a row read.
pub fn lookup_key(id: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = id
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Severity names accepted by the query API's `min_severity`, with the lowest OTLP
/// severity number of each range.
pub const SEVERITIES: [(&str, i32); 6] = [
    ("trace", 1),
    ("debug", 5),
    ("info", 9),
    ("warn", 13),
    ("error", 17),
    ("fatal", 21),
];

/// Parses `info`, `WARN`, `error` or a number 1–24.
pub fn parse_severity(text: &str) -> Option<i32> {
    if let Ok(number) = text.parse::<i32>() {
        return (0..=24).contains(&number).then_some(number);
    }
    let lower = text.to_ascii_lowercase();
    let lower = if lower == "warning" {
        "warn".to_owned()
    } else {
        lower
    };
    SEVERITIES
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, n)| *n)
}

/// The severity number a record gets when the sender only gave a text.
pub fn severity_from_text(text: &str) -> i32 {
    parse_severity(text.trim()).unwrap_or(0)
}

/// The first severity number above DEBUG: records below it follow the debug retention.
pub const INFO: i32 = 9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_names_and_numbers_parse() {
        assert_eq!(parse_severity("warn"), Some(13));
        assert_eq!(parse_severity("WARNING"), Some(13));
        assert_eq!(parse_severity("17"), Some(17));
        assert_eq!(parse_severity("25"), None);
        assert_eq!(parse_severity("loud"), None);
    }

    #[test]
    fn lookup_keys_are_stable_and_differ() {
        assert_eq!(lookup_key("abc"), lookup_key("abc"));
        assert_ne!(lookup_key("abc"), lookup_key("abd"));
    }
}
