//! `/v1/notifications`: services request a notification (idempotently, with an
//! `Idempotency-Key`) and read its delivery status and attempts.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use service_kit::{ApiJson, Problem};
use tessera_auth::{Authenticated, Principal};
use utoipa::ToSchema;

use super::error::ApiError;
use super::schema::{
    BodyTooLarge, Forbidden, MultipleCredentials, PROBLEM_JSON, ProblemDoc, Unauthenticated,
    Unavailable, UnsupportedMediaType,
};
use crate::channel::ChannelKind;
use crate::db::jobs::{self, AttemptRow, JobRow};
use crate::db::notifications::{self, Created, Guard, NewJob, NewNotification, NotificationRow};
use crate::state::AppState;

/// Role of clients allowed to request notifications and read any of them.
pub const SERVICE_ROLE: &str = "service";
/// Header carrying the caller's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Header set on the answer to a repeated request.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest idempotency key accepted (Stripe's limit).
const MAX_KEY_BYTES: usize = 255;

/// A notification to send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRequest {
    /// The recipient (a user id); address, locale and preferences come from profile.
    #[schema(example = "01a214dd-eda1-73b4-8d2a-29c8c7ecf4d7")]
    pub user_id: String,
    /// Template name, e.g. `welcome`.
    #[schema(example = "welcome")]
    pub template: String,
    /// Channels to deliver on, one job each.
    #[schema(example = json!(["email"]))]
    pub channels: Vec<ChannelKind>,
    /// Values the template may use as `data.<name>`.
    #[serde(default)]
    pub data: Map<String, Value>,
    /// Send even on channels the user turned off (security alerts).
    #[serde(default)]
    pub critical: bool,
    /// Overrides the recipient's locale.
    #[serde(default)]
    #[schema(nullable = false, example = "en")]
    pub locale: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub number: i64,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds.
    pub finished_at: i64,
    /// `delivered`, `skipped`, `transient` or `permanent`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

/// Delivery on one channel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub channel: ChannelKind,
    /// `pending`, `sending`, `delivered`, `skipped` or `failed`.
    pub status: String,
    pub attempts: i64,
    /// Unix milliseconds of the next attempt, while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_attempt_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub last_error: Option<String>,
    pub history: Vec<AttemptView>,
}

/// A notification and its delivery state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub user_id: String,
    pub template: String,
    pub critical: bool,
    /// `api` or `event`.
    pub origin: String,
    /// `pending` while a job is, else `failed` if any job failed, else `delivered`
    /// (skipped jobs count as done).
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
    pub jobs: Vec<JobView>,
}

fn view(
    row: NotificationRow,
    job_rows: Vec<JobRow>,
    attempt_rows: &[AttemptRow],
) -> NotificationView {
    let jobs: Vec<JobView> = job_rows
        .into_iter()
        .map(|job| JobView {
            history: attempt_rows
                .iter()
                .filter(|a| a.job_id == job.id)
                .map(|a| AttemptView {
                    number: a.number,
                    started_at: a.started_at,
                    finished_at: a.finished_at,
                    outcome: a.outcome.clone(),
                    detail: a.detail.clone(),
                })
                .collect(),
            next_attempt_at: (job.status == "pending").then_some(job.due_at),
            channel: ChannelKind::parse(&job.channel).unwrap_or(ChannelKind::Email),
            id: job.id,
            status: job.status,
            attempts: job.attempts,
            last_error: job.last_error,
        })
        .collect();
    let status = if jobs
        .iter()
        .any(|j| j.status == "pending" || j.status == "sending")
    {
        "pending"
    } else if jobs.iter().any(|j| j.status == "failed") {
        "failed"
    } else {
        "delivered"
    };
    NotificationView {
        id: row.id,
        user_id: row.user_id,
        template: row.template,
        critical: row.critical,
        origin: row.origin,
        status: status.to_owned(),
        created_at: row.created_at,
        jobs,
    }
}

async fn load(state: &AppState, id: &str) -> Result<Option<NotificationView>, ApiError> {
    let Some(row) = notifications::get(&state.pool, id).await? else {
        return Ok(None);
    };
    let (job_rows, attempt_rows) = jobs::of_notification(&state.pool, id).await?;
    Ok(Some(view(row, job_rows, &attempt_rows)))
}

fn bad_request(code: &str, detail: impl Into<String>) -> ApiError {
    Problem::new(StatusCode::BAD_REQUEST, code)
        .detail(detail)
        .into()
}

/// JSON with object members sorted, so equal bodies hash equally whatever their order.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = members
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

fn request_hash(request: &NotificationRequest) -> String {
    let value = serde_json::to_value(request).unwrap_or(Value::Null);
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical(&value).as_bytes());
    digest.as_ref().iter().fold(String::new(), |mut hex, byte| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let valid = values.next().is_none()
        && !value.is_empty()
        && value.len() <= MAX_KEY_BYTES
        && value.as_bytes().iter().all(u8::is_ascii_graphic);
    if !valid {
        return Err(bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be one header of 1 to 255 visible ASCII characters.",
        ));
    }
    Ok(value.to_str().ok().map(str::to_owned))
}

fn validate(state: &AppState, request: &NotificationRequest) -> Result<(), ApiError> {
    if request.user_id.is_empty() || request.user_id.len() > 255 {
        return Err(bad_request(
            "invalid_user_id",
            "user_id must be 1 to 255 characters.",
        ));
    }
    let unique: HashSet<_> = request.channels.iter().collect();
    if request.channels.is_empty() || unique.len() != request.channels.len() {
        return Err(bad_request(
            "invalid_channels",
            "channels must name each channel once, at least one.",
        ));
    }
    for channel in &request.channels {
        if !state.channels.contains(channel) {
            return Err(bad_request(
                "channel_unavailable",
                format!("The {channel} channel is not configured on this server."),
            ));
        }
        if !state.templates.supports(&request.template, *channel) {
            return Err(bad_request(
                "unknown_template",
                format!("There is no template `{}` for {channel}.", request.template),
            ));
        }
    }
    if let Some(locale) = &request.locale
        && (locale.is_empty()
            || locale.len() > 35
            || !locale
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(bad_request(
            "invalid_locale",
            "locale must be a BCP 47 tag such as `de-CH`.",
        ));
    }
    Ok(())
}

/// The idempotency scope of a caller: its client id, or its subject.
fn caller_id(caller: &Principal) -> &str {
    caller.client_id.as_deref().unwrap_or(&caller.subject)
}

/// Request a notification
///
/// Queues one delivery job per channel and answers at once. With an `Idempotency-Key`
/// (kept at least 24 hours per caller), repeating the request answers the original
/// notification; the same key with a different body is refused.
#[utoipa::path(
    post,
    path = "/v1/notifications",
    tag = "notifications",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: 1 to 255 visible ASCII characters.")),
    request_body(content = NotificationRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued (or, with `Idempotent-Replayed: true`, queued before).", body = NotificationView),
        (status = 400, description = "`invalid_user_id`, `invalid_channels`, `channel_unavailable`, \
            `unknown_template`, `invalid_locale`, `invalid_idempotency_key`, `invalid_json` or \
            `multiple_credentials`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 415, response = UnsupportedMediaType),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_body`, or `idempotency_key_reused`: the key was used \
            with a different body.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NotificationRequest>,
) -> Result<Response, ApiError> {
    caller.require_role(SERVICE_ROLE)?;
    let key = idempotency_key(&headers)?;
    validate(&state, &request)?;
    let hash = request_hash(&request);
    let now = state.clock.now();
    let notification = NewNotification {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: request.user_id.clone(),
        template: request.template.clone(),
        locale: request.locale.clone(),
        data: Value::Object(request.data.clone()).to_string(),
        critical: request.critical,
        origin: "api",
        requested_by: caller_id(&caller).to_owned(),
        created_at: now.unix_timestamp(),
    };
    let jobs: Vec<NewJob> = request
        .channels
        .iter()
        .map(|channel| NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            channel: *channel,
            address: None,
        })
        .collect();
    let guard = match &key {
        Some(key) => Guard::Idempotency {
            caller: caller_id(&caller),
            key,
            hash: &hash,
        },
        None => Guard::None,
    };
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let (id, replayed) =
        match notifications::create(&state.pool, &notification, &jobs, guard, now_ms).await? {
            Created::New | Created::AlreadyHandled => {
                crate::delivery::wake_for(&state.wake, jobs.len());
                (notification.id, false)
            }
            Created::KeyUsed {
                notification_id,
                request_hash,
            } => {
                if request_hash != hash {
                    return Err(Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency_key_reused",
                    )
                    .detail("This Idempotency-Key was used with a different request body.")
                    .into());
                }
                (notification_id, true)
            }
        };
    let found = load(&state, &id).await?.ok_or(ApiError::Unavailable)?;
    let mut response = (StatusCode::ACCEPTED, axum::Json(found)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A notification's status
///
/// Services may read any notification; a user may read those addressed to them.
#[utoipa::path(
    get,
    path = "/v1/notifications/{id}",
    tag = "notifications",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The notification's id.")),
    responses(
        (status = 200, description = "The notification, its jobs and their attempts.", body = NotificationView),
        (status = 400, response = MultipleCredentials),
        (status = 401, response = Unauthenticated),
        (status = 404, description = "`notification_not_found` (also for someone else's).",
            body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<NotificationView>, ApiError> {
    let found = load(&state, &id)
        .await?
        .filter(|n| caller.has_role(SERVICE_ROLE) || n.user_id == caller.subject);
    found.map(axum::Json).ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, "notification_not_found")
            .detail("No notification with this id is visible to you.")
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_order_does_not_change_the_hash() {
        let a: NotificationRequest = serde_json::from_str(
            r#"{"user_id":"u","template":"t","channels":["email"],"data":{"a":1,"b":{"x":1,"y":2}}}"#,
        )
        .unwrap();
        let b: NotificationRequest = serde_json::from_str(
            r#"{"data":{"b":{"y":2,"x":1},"a":1},"channels":["email"],"template":"t","user_id":"u","critical":false}"#,
        )
        .unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        let c: NotificationRequest = serde_json::from_str(
            r#"{"user_id":"u","template":"t","channels":["email"],"data":{"a":2}}"#,
        )
        .unwrap();
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}
