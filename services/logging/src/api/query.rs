//! The query API: filtered newest-first pages, counts per time bucket, live tail (SSE).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use service_kit::ApiJson;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast::error::RecvError;

use super::caller::Reader;
use super::error::ApiError;
use crate::record::{LogRow, parse_severity};
use crate::state::AppState;
use crate::store::{Bucket, Cursor, Filter};

/// Records per page by default and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// Longest text search.
const MAX_TEXT: usize = 256;
/// Buckets a histogram aims for when `bucket_secs` is not given.
const TARGET_BUCKETS: i64 = 60;
/// Most buckets a histogram may have.
const MAX_BUCKETS: i64 = 10_000;
/// Range of a histogram without `since`: the last hour.
const DEFAULT_RANGE_NANOS: i64 = 3_600 * 1_000_000_000;

/// Filters shared by every query endpoint.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Only this service (`service.name`).
    pub service: Option<String>,
    /// Minimum severity: `trace`, `debug`, `info`, `warn`, `error`, `fatal` or 1–24.
    pub min_severity: Option<String>,
    /// From this time (RFC 3339 or nanoseconds since the epoch), inclusive.
    pub since: Option<String>,
    /// Until this time, exclusive.
    pub until: Option<String>,
    /// Words that must appear in the body, in this order.
    pub q: Option<String>,
    /// Only this trace (32 lowercase hex digits).
    pub trace_id: Option<String>,
    /// Only this request id.
    pub request_id: Option<String>,
    /// `key=value`: only records whose attribute `key` has this value.
    pub attr: Option<String>,
}

/// Page parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Records per page (1–1000, default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Histogram parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BucketParams {
    /// Bucket width in seconds; by default about 60 buckets over the range.
    pub bucket_secs: Option<i64>,
}

/// A page of records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordPage {
    /// Newest first.
    pub records: Vec<LogRow>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Counts over time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Histogram {
    /// Bucket width in nanoseconds.
    pub bucket_nanos: i64,
    pub since_unix_nano: i64,
    pub until_unix_nano: i64,
    /// Non-empty buckets, oldest first.
    pub buckets: Vec<Bucket>,
}

fn bad(code: &str, detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, detail)
}

fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(nanos) = text.parse::<i64>() {
        return Ok(nanos);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
        .ok_or_else(|| {
            bad(
                "invalid_time",
                format!("`{name}` must be RFC 3339 or nanoseconds since the epoch"),
            )
        })
}

fn is_attribute_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
}

impl FilterParams {
    /// Validates the parameters into a store filter.
    pub fn filter(&self) -> Result<Filter, ApiError> {
        let non_empty = |v: &Option<String>| v.as_ref().filter(|s| !s.is_empty()).cloned();
        let min_severity = non_empty(&self.min_severity)
            .map(|s| {
                parse_severity(&s).ok_or_else(|| {
                    bad(
                        "invalid_severity",
                        "`min_severity` must be trace, debug, info, warn, error, fatal or 1-24",
                    )
                })
            })
            .transpose()?;
        let trace_id = non_empty(&self.trace_id).map(|t| t.to_ascii_lowercase());
        if let Some(t) = &trace_id
            && (t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad("invalid_trace_id", "`trace_id` must be 32 hex digits"));
        }
        let request_id = non_empty(&self.request_id);
        if let Some(r) = &request_id
            && !service_kit::request_context::is_acceptable_request_id(r)
        {
            return Err(bad(
                "invalid_request_id",
                "`request_id` must be 1-128 letters, digits or -_.:",
            ));
        }
        let text = non_empty(&self.q);
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
            return Err(bad(
                "invalid_text",
                format!("`q` must be at most {MAX_TEXT} characters"),
            ));
        }
        let attribute = non_empty(&self.attr)
            .map(|a| match a.split_once('=') {
                Some((k, v)) if is_attribute_key(k) => Ok((k.to_owned(), v.to_owned())),
                _ => Err(bad(
                    "invalid_attribute",
                    "`attr` must be key=value, the key of letters, digits and ._-:/",
                )),
            })
            .transpose()?;
        Ok(Filter {
            service: non_empty(&self.service),
            min_severity,
            since: non_empty(&self.since)
                .map(|t| parse_time("since", &t))
                .transpose()?,
            until: non_empty(&self.until)
                .map(|t| parse_time("until", &t))
                .transpose()?,
            text,
            trace_id,
            request_id,
            attribute,
        })
    }
}

/// Search log records, newest first.
#[utoipa::path(
    get,
    path = "/v1/records",
    tag = "query",
    params(FilterParams, PageParams),
    responses(
        (status = 200, description = "A page of records.", body = RecordPage),
        (status = 400, description = "A filter is invalid.", body = super::ingest::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token.", body = super::ingest::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the `admin` role.", body = super::ingest::ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn records(
    _reader: Reader,
    State(state): State<AppState>,
    Query(filter): Query<FilterParams>,
    Query(page): Query<PageParams>,
) -> Result<ApiJson<RecordPage>, ApiError> {
    let filter = filter.filter()?;
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad(
            "invalid_limit",
            format!("`limit` must be 1-{MAX_LIMIT}"),
        ));
    }
    let cursor = page
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| {
            Cursor::parse(c).ok_or_else(|| {
                bad(
                    "invalid_cursor",
                    "`cursor` is not one this service returned",
                )
            })
        })
        .transpose()?;
    let records = state.store.query(&filter, cursor, limit).await?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| {
            records.last().map(|r| {
                Cursor {
                    ts: r.time_unix_nano,
                    id: r.id,
                }
                .encode()
            })
        })
        .flatten();
    Ok(ApiJson(RecordPage {
        records,
        next_cursor,
    }))
}

/// Count matching records per time bucket.
#[utoipa::path(
    get,
    path = "/v1/records/histogram",
    tag = "query",
    params(FilterParams, BucketParams),
    responses(
        (status = 200, description = "Counts per bucket.", body = Histogram),
        (status = 400, description = "A filter is invalid.", body = super::ingest::ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn histogram(
    _reader: Reader,
    State(state): State<AppState>,
    Query(filter): Query<FilterParams>,
    Query(buckets): Query<BucketParams>,
) -> Result<ApiJson<Histogram>, ApiError> {
    let mut filter = filter.filter()?;
    let now = i64::try_from(state.clock.now().unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let until = filter.until.unwrap_or(now);
    let since = filter.since.unwrap_or(until - DEFAULT_RANGE_NANOS);
    if since >= until {
        return Err(bad("invalid_range", "`since` must be before `until`"));
    }
    let range = until - since;
    let bucket_nanos = match buckets.bucket_secs {
        Some(secs) if secs >= 1 => secs.saturating_mul(1_000_000_000),
        Some(_) => return Err(bad("invalid_bucket", "`bucket_secs` must be at least 1")),
        None => (range / TARGET_BUCKETS).max(1_000_000_000),
    };
    if range / bucket_nanos > MAX_BUCKETS {
        return Err(bad(
            "invalid_bucket",
            format!("at most {MAX_BUCKETS} buckets; widen `bucket_secs`"),
        ));
    }
    filter.since = Some(since);
    filter.until = Some(until);
    let buckets = state.store.histogram(&filter, bucket_nanos).await?;
    Ok(ApiJson(Histogram {
        bucket_nanos,
        since_unix_nano: since,
        until_unix_nano: until,
        buckets,
    }))
}

/// Whether a live record matches `filter` (the same rules as the SQL, in memory; text
/// is matched case-insensitively as a substring).
fn matches(filter: &Filter, row: &LogRow) -> bool {
    filter.service.as_ref().is_none_or(|s| *s == row.service)
        && filter.min_severity.is_none_or(|m| row.severity_number >= m)
        && filter
            .trace_id
            .as_ref()
            .is_none_or(|t| row.trace_id.as_ref() == Some(t))
        && filter
            .request_id
            .as_ref()
            .is_none_or(|r| row.request_id.as_ref() == Some(r))
        && filter
            .text
            .as_ref()
            .is_none_or(|t| row.body.to_lowercase().contains(&t.to_lowercase()))
        && filter.attribute.as_ref().is_none_or(|(k, v)| {
            row.attributes.get(k).is_some_and(|a| match a {
                serde_json::Value::String(s) => s == v,
                other => serde_json::from_str::<serde_json::Value>(v).is_ok_and(|p| p == *other),
            })
        })
}

/// One event of the `/v1/records/tail` stream (keep-alive comments aside). Clients read
/// `data` as JSON for a `record` (one record, as an item of `/v1/records`) and as a count
/// for `lagged`.
#[derive(Debug, utoipa::ToSchema)]
pub struct TailEvent {
    /// What the event carries.
    pub event: TailEventName,
    /// A record as JSON text (`record`) or the number of records skipped (`lagged`).
    #[schema(example = r#"{"id":1,"service":"gateway","body":"GET /profile/me 200"}"#)]
    pub data: String,
}

/// The event names `/v1/records/tail` sends.
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TailEventName {
    /// One new record matching the filters.
    Record,
    /// This client read too slowly; `data` says how many records it missed.
    Lagged,
}

/// Follow new records as Server-Sent Events.
///
/// Each `record` event carries one record as JSON; a `lagged` event says how many were
/// skipped because this client read too slowly.
#[utoipa::path(
    get,
    path = "/v1/records/tail",
    tag = "query",
    params(FilterParams),
    responses(
        (status = 200, description = "An event stream of new records; the schema describes one event.", content_type = "text/event-stream", body = TailEvent),
        (status = 400, description = "A filter is invalid.", body = super::ingest::ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn tail(
    _reader: Reader,
    State(state): State<AppState>,
    Query(filter): Query<FilterParams>,
) -> Result<Response, ApiError> {
    let filter = filter.filter()?;
    let receiver = state.ingest.subscribe();
    let events = stream::unfold((receiver, filter), |(mut receiver, filter)| async move {
        loop {
            let event = match receiver.recv().await {
                Ok(row) if matches(&filter, &row) => Event::default()
                    .event("record")
                    .json_data(&*row)
                    .unwrap_or_default(),
                Ok(_) => continue,
                Err(RecvError::Lagged(skipped)) => {
                    Event::default().event("lagged").data(skipped.to_string())
                }
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok::<Event, Infallible>(event), (receiver, filter)));
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
