//! The logging service's OpenAPI 3.1 document, generated from the handlers and served
//! at `/openapi.json`. A copy is committed as `services/logging/openapi.json`; the
//! integration tests fail when it differs from the code.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, ingest, query};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera logging",
        version = env!("CARGO_PKG_VERSION"),
        description = "Log ingestion over OTLP/HTTP, log queries and live tail, and the \
            hash-chained audit trail. Senders need a service token (role `service`); \
            readers need the `admin` role. Errors are RFC 9457 problems with a stable `code`.",
    ),
    paths(
        ingest::export,
        query::records,
        query::histogram,
        query::tail,
        audit::append,
        audit::records,
        audit::verify,
    ),
    components(schemas(ingest::ProblemDoc)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "ingest", description = "OTLP/HTTP log export."),
        (name = "query", description = "Searching and following log records."),
        (name = "audit", description = "The append-only, hash-chained audit trail."),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token issued by identity."))
                    .build(),
            ),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a final newline (the committed file's content).
pub fn pretty_json() -> String {
    let mut json = document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes to JSON");
    json.push('\n');
    json
}

static SERVED: LazyLock<String> = LazyLock::new(pretty_json);

/// `GET /openapi.json`
pub async fn serve() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        SERVED.as_str(),
    )
        .into_response()
}
