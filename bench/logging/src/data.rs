//! The records the benchmark writes: ~250-byte bodies from three services with a
//! realistic severity mix, random trace ids and UUIDv7 request ids, as store records
//! and as OTLP protobuf records.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tessera_logging::record::NewRecord;

pub(crate) fn now_nanos() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

pub(crate) fn hex(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
}

/// The service of the i-th record.
pub(crate) fn service(i: usize) -> &'static str {
    ["gateway", "profile", "identity"][i % 3]
}

/// The severity of the i-th record: 70 % info, 20 % debug, 8 % warn, 2 % error.
pub(crate) fn severity(i: usize) -> (i32, &'static str) {
    match i % 50 {
        0 => (17, "ERROR"),
        1..=4 => (13, "WARN"),
        5..=14 => (5, "DEBUG"),
        _ => (9, "INFO"),
    }
}

/// A ~250-byte record of a request in a service, at `ts`. Every body has the word
/// `finished`; one in 1,000 has `timeout` (the rare-word query).
pub(crate) fn new_record(i: usize, ts: i64) -> NewRecord {
    let (severity_number, severity_text) = severity(i);
    let outcome = if i.is_multiple_of(1000) {
        "timeout"
    } else {
        "200"
    };
    NewRecord {
        time_unix_nano: ts,
        observed_time_unix_nano: ts,
        service: service(i).to_owned(),
        severity_number,
        severity_text: severity_text.into(),
        body: format!(
            "request {i} finished: GET /v1/profiles/{} status {outcome} in 3.2 ms",
            hex(8)
        ),
        trace_id: Some(hex(32)),
        span_id: Some(hex(16)),
        request_id: Some(uuid::Uuid::now_v7().to_string()),
        attributes_json: r#"{"http.route":"/v1/profiles/{id}","status":200}"#.to_owned(),
        resource_json: Arc::from(r#"{"service.name":"profile","host.name":"node-1"}"#),
    }
}

pub(crate) fn otlp_record(i: usize) -> LogRecord {
    let r = new_record(i, now_nanos());
    let bytes = |h: &str| {
        (0..h.len() / 2)
            .map(|k| u8::from_str_radix(&h[k * 2..k * 2 + 2], 16).unwrap_or(0))
            .collect()
    };
    LogRecord {
        time_unix_nano: u64::try_from(r.time_unix_nano).unwrap_or(0),
        severity_number: r.severity_number,
        severity_text: r.severity_text,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(r.body)),
        }),
        attributes: vec![
            KeyValue {
                key: "request_id".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(
                        r.request_id.unwrap_or_default(),
                    )),
                }),
                ..KeyValue::default()
            },
            KeyValue {
                key: "http.route".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("/v1/profiles/{id}".into())),
                }),
                ..KeyValue::default()
            },
        ],
        trace_id: bytes(r.trace_id.as_deref().unwrap_or_default()),
        span_id: bytes(r.span_id.as_deref().unwrap_or_default()),
        ..LogRecord::default()
    }
}
