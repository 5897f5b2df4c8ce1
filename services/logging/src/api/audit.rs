//! The audit trail over HTTP: append (services), list and verify (admins).

use axum::extract::{Query, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use service_kit::ApiJson;

use super::caller::{Reader, Sender};
use super::error::ApiError;
use super::ingest::ProblemDoc;
use crate::audit::{Appended, AuditError, AuditEvent, AuditFilter, AuditRecord, Verification};
use crate::state::AppState;

/// Record an audit event (a CloudEvents 1.0 JSON envelope).
///
/// Idempotent by event `id`: sending the same event again returns its place in the
/// chain with `duplicate: true`. Services normally publish audit events on the bus
/// (`tessera.audit.>`); this endpoint is the same path for callers without one.
#[utoipa::path(
    post,
    path = "/v1/audit/events",
    tag = "audit",
    request_body = AuditEvent,
    responses(
        (status = 201, description = "Appended (or already present).", body = Appended),
        (status = 400, description = "The event is invalid.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the size limit (`body_too_large`).", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json` (`unsupported_media_type`).", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The body is JSON but not an event (`invalid_body`).", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry.", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn append(
    _sender: Sender,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<AuditEvent>,
) -> Result<(StatusCode, ApiJson<Appended>), ApiError> {
    event
        .validate()
        .map_err(|detail| ApiError::bad_request("invalid_event", detail))?;
    if !state.database.is_migrated() {
        return Err(ApiError::Unavailable("database"));
    }
    match state.audit.append(event).await {
        Ok(appended) => Ok((StatusCode::CREATED, ApiJson(appended))),
        Err(AuditError::Db(error)) => Err(error.into()),
        Err(AuditError::Stopped) => Err(ApiError::Unavailable("audit writer")),
    }
}

/// Filters of the audit listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this event type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Only this source (`/tessera/identity`).
    pub source: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Records before this `seq` (the `next_before_seq` of the previous page).
    pub before_seq: Option<i64>,
    /// Records per page (1–1000, default 100).
    pub limit: Option<i64>,
}

/// A page of audit records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub records: Vec<AuditRecord>,
    /// Pass as `before_seq` for the next page; absent on the last.
    pub next_before_seq: Option<i64>,
}

/// List audit records, newest first.
#[utoipa::path(
    get,
    path = "/v1/audit/records",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of records.", body = AuditPage),
        (status = 400, description = "A parameter is invalid.", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn records(
    _reader: Reader,
    State(state): State<AppState>,
    Query(params): Query<AuditParams>,
) -> Result<ApiJson<AuditPage>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "`limit` must be 1-1000",
        ));
    }
    let filter = AuditFilter {
        event_type: params.event_type,
        source: params.source,
        subject: params.subject,
    };
    let records = state
        .audit
        .records(&filter, params.before_seq, limit)
        .await?;
    let next_before_seq = (records.len() == usize::try_from(limit).unwrap_or(0))
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(ApiJson(AuditPage {
        records,
        next_before_seq,
    }))
}

/// Verify the whole chain and return its head.
///
/// Recomputes every record's hash from its stored fields and the previous hash. A
/// record inserted, changed or removed behind the service's back makes `valid` false
/// and names the first bad record.
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    responses(
        (status = 200, description = "The verdict.", body = Verification),
    ),
    security(("bearer" = []))
)]
pub async fn verify(
    _reader: Reader,
    State(state): State<AppState>,
) -> Result<ApiJson<Verification>, ApiError> {
    Ok(ApiJson(state.audit.verify().await?))
}
