//! Authentication on the request path: one credential per request on every route, and
//! on protected routes a verified token with the required roles.

use axum::response::Response;
use http::header::{AUTHORIZATION, RETRY_AFTER};
use http::{HeaderValue, StatusCode, Uri};
use tessera_auth::Principal;

use super::{Gateway, problem};
use crate::routes::Route;
use crate::routes::file::AuthSpec;

/// Refuses a request carrying more than one credential (token smuggling), on every
/// route; synchronous, so public routes need no authentication future at all.
pub(super) fn one_credential(
    gateway: &Gateway,
    route: &Route,
    headers: &http::HeaderMap,
    uri: &Uri,
) -> Result<(), Response> {
    let credentials = headers.get_all(AUTHORIZATION).iter().count();
    let in_query = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("access_token"))
    });
    if credentials > 1 || (credentials == 1 && in_query) {
        gateway
            .metrics
            .auth_rejected(&route.name, "multiple_credentials");
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "multiple_credentials",
            "Send one credential, in one Authorization header.",
        ));
    }
    Ok(())
}

/// Applies the route's auth policy. Every route refuses requests carrying more than one
/// credential (token smuggling); protected routes verify the token.
pub(super) async fn authenticate(
    gateway: &Gateway,
    route: &Route,
    headers: &http::HeaderMap,
    uri: &Uri,
) -> Result<Option<Principal>, Response> {
    one_credential(gateway, route, headers, uri)?;
    let required_roles = match &route.auth {
        AuthSpec::Public => return Ok(None),
        AuthSpec::Authenticated => None,
        AuthSpec::Roles(roles) => Some(roles),
    };

    if !gateway.verifier.is_ready() {
        // Until the first JWKS load succeeds nobody can be verified: that is our outage,
        // not the client's fault, so 503 rather than 401.
        gateway
            .metrics
            .auth_rejected(&route.name, "keys_unavailable");
        let mut response = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            "Token verification is starting; retry shortly.",
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("2"));
        return Err(response);
    }
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
        });
    let Some(token) = token else {
        gateway.metrics.auth_rejected(&route.name, "missing");
        return Err(unauthorized("A bearer token is required."));
    };
    let principal = match gateway.verifier.verify(token).await {
        Ok(principal) => principal,
        Err(error) => {
            gateway.metrics.auth_rejected(&route.name, error.code());
            tracing::debug!(route = %route.name, reason = error.code(), "token refused");
            return Err(unauthorized("The token is not valid."));
        }
    };
    if let Some(roles) = required_roles
        && !roles.iter().any(|role| principal.has_role(role))
    {
        gateway.metrics.auth_rejected(&route.name, "forbidden");
        return Err(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The token lacks a role this route requires.",
        ));
    }
    Ok(Some(principal))
}

fn unauthorized(detail: &str) -> Response {
    let mut response = problem(StatusCode::UNAUTHORIZED, "invalid_token", detail);
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}
