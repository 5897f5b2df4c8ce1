//! Identity's OpenAPI 3.1 document, generated from the handlers' annotations and served
//! at `/openapi.json`. A copy is committed as `services/identity/openapi.json`; the
//! integration tests fail when it differs from the code.

use std::sync::LazyLock;

use axum::response::Response;
use service_kit::openapi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::schema::{
    BodyTooLarge, InvalidBody, MultipleCredentials, NotAdmin, OAuthErrorDoc, ProblemDoc,
    Unauthenticated, Unavailable, UnsupportedMediaType,
};
use super::{admin, discovery, oauth, users};

/// Name of the security scheme of access tokens.
const BEARER: &str = "bearer";
/// Name of the security scheme of service clients' credentials.
const BASIC: &str = "basic";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera identity",
        version = env!("CARGO_PKG_VERSION"),
        description = "Users, service clients and token issuance. Access tokens are JWTs \
            (RFC 9068) signed with the keys published at `/.well-known/jwks.json`. Errors of the \
            `/v1` API are RFC 9457 problems with a stable `code`; the `/oauth2` endpoints take \
            form-encoded requests and answer RFC 6749 errors.",
    ),
    paths(
        users::signup,
        users::login,
        users::logout,
        users::me,
        admin::list_users,
        admin::disable_user,
        admin::list_clients,
        admin::create_client,
        admin::disable_client,
        oauth::token,
        oauth::revoke,
        oauth::introspect,
        discovery::openid_configuration,
        discovery::jwks,
    ),
    components(
        schemas(ProblemDoc, OAuthErrorDoc),
        responses(
            MultipleCredentials,
            Unauthenticated,
            NotAdmin,
            UnsupportedMediaType,
            BodyTooLarge,
            InvalidBody,
            Unavailable,
        ),
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "users", description = "Accounts: signup, login, logout and the current user."),
        (name = "admin", description = "Users and service clients, for holders of the `admin` role."),
        (name = "oauth2", description = "The standard OAuth 2.0 token, revocation (RFC 7009) and \
            introspection (RFC 7662) endpoints."),
        (name = "discovery", description = "What token verifiers need: server metadata and public keys."),
    )
)]
struct ApiDoc;

/// Adds the security schemes the operations name, which the derive cannot declare.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            openapi::bearer_scheme("An access token from `/v1/login` or `/oauth2/token`."),
        );
        components.add_security_scheme(
            BASIC,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A service client's `client_id` and `client_secret` (RFC 6749 §2.3.1).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of identity's public API.
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
