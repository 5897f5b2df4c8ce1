//! Profile's OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `/openapi.json`. A copy is committed as `services/profile/openapi.json`; the
//! integration tests fail when it differs from the code.

use std::sync::LazyLock;

use axum::response::Response;
use service_kit::openapi::{self, BearerSecurity};
use utoipa::OpenApi;

use super::profiles;
use super::schema::{
    BodyTooLarge, Forbidden, InvalidBody, MultipleCredentials, ProblemDoc, Unauthenticated,
    Unavailable, UnsupportedMediaType,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera profile",
        version = env!("CARGO_PKG_VERSION"),
        description = "User profiles: contact address, display name, locale, phone and \
            notification preferences. Creating a profile publishes \
            `dev.tessera.profile.user.created.v1`. Errors are RFC 9457 problems with a stable `code`.",
    ),
    paths(profiles::create, profiles::me, profiles::update, profiles::by_user),
    components(
        schemas(ProblemDoc),
        responses(
            MultipleCredentials,
            Unauthenticated,
            Forbidden,
            UnsupportedMediaType,
            BodyTooLarge,
            InvalidBody,
            Unavailable,
        ),
    ),
    modifiers(&BEARER),
    tags((name = "profiles", description = "A user's own profile; any profile for services.")),
)]
struct ApiDoc;

/// Access tokens, as every operation requires.
const BEARER: BearerSecurity = BearerSecurity {
    description: "An access token issued by identity.",
};

/// The OpenAPI document of profile's public API.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a final newline: the content of the committed
/// `openapi.json` and the body of `GET /openapi.json`.
pub fn pretty_json() -> String {
    openapi::pretty_json(&document())
}

/// Built once: the document only changes with the code.
static SERVED: LazyLock<String> = LazyLock::new(pretty_json);

/// `GET /openapi.json`
pub async fn serve() -> Response {
    openapi::json_response(SERVED.as_str())
}
