//! `POST /v1/logs`: OTLP/HTTP log export (protobuf or JSON, optionally gzip).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use prost::Message;
use service_kit::Problem;

use super::caller::Sender;
use super::error::ApiError;
use crate::otlp::{self, DecodeError, Encoding};
use crate::state::AppState;

/// Export log records (OTLP/HTTP).
///
/// The body is an `ExportLogsServiceRequest` as protobuf (`application/x-protobuf`) or
/// OTLP JSON (`application/json`), optionally `Content-Encoding: gzip`. A 200 means the
/// records are stored; records that cannot be stored are reported in `partialSuccess`
/// (do not retry those). 429 and 503 carry `Retry-After`: retry the whole request.
#[utoipa::path(
    post,
    path = "/v1/logs",
    tag = "ingest",
    request_body(
        description = "An OTLP ExportLogsServiceRequest.",
        content(
            (Vec<u8> = "application/x-protobuf"),
            (Object = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "Stored (see `partialSuccess` for refused records). \
            Same content type as the request.",
            content((Vec<u8> = "application/x-protobuf"), (Object = "application/json"))),
        (status = 400, description = "Not a valid export request (truncated, not UTF-8, not OTLP).", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No valid service token.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the `service` role.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body (or decompressed body) too large.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Content type is neither protobuf nor JSON.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Queue full; retry after `Retry-After` seconds.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; retry after `Retry-After` seconds.", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn export(
    _sender: Sender,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        return Err(
            Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                .detail("Send application/x-protobuf or application/json (OTLP/HTTP).")
                .into(),
        );
    };
    if !state.database.is_migrated() {
        return Err(ApiError::Unavailable("database"));
    }
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let request = otlp::decode(&body, encoding, content_encoding).map_err(|e| match e {
        DecodeError::TooLarge => ApiError::Problem(
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").detail(e.to_string()),
        ),
        DecodeError::UnsupportedEncoding(_) => ApiError::Problem(
            Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
                .detail(e.to_string()),
        ),
        DecodeError::Gzip(_) | DecodeError::Invalid(_) => {
            ApiError::bad_request("invalid_otlp", e.to_string())
        }
    })?;
    let now = i64::try_from(state.clock.now().unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let converted = otlp::convert(request, state.limits, now);
    state.ingest.submit(converted.records).await?;
    let response = ExportLogsServiceResponse {
        partial_success: (converted.rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: converted.rejected,
            error_message: converted.rejection.unwrap_or_default(),
        }),
    };
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&response).unwrap_or_default(),
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response())
}

/// RFC 9457 problem (schema for the document only).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code, reason = "documentation only")]
pub struct ProblemDoc {
    #[schema(rename = "type")]
    type_uri: String,
    title: String,
    status: u16,
    code: String,
    detail: Option<String>,
}
