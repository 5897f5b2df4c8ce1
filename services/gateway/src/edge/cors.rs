//! CORS for browser clients, per route: preflight answers and response headers.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ORIGIN,
    VARY,
};
use http::{HeaderMap, HeaderValue, Method};

use crate::routes::file::CorsSpec;

const DEFAULT_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const DEFAULT_HEADERS: &str = "authorization, content-type";

/// The request's `Origin` if the route allows it.
pub fn allowed_origin<'a>(cors: &CorsSpec, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let origin = headers.get(ORIGIN)?;
    let text = origin.to_str().ok()?;
    cors.allowed_origins
        .iter()
        .any(|o| o == "*" || o == text)
        .then_some(origin)
}

/// Whether this is a CORS preflight request.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key("access-control-request-method")
}

/// Headers answering a preflight from an allowed origin.
pub fn preflight_headers(cors: &CorsSpec, origin: &HeaderValue, out: &mut HeaderMap) {
    response_headers(cors, origin, out);
    let join = |items: &[String], default: &'static str| {
        if items.is_empty() {
            HeaderValue::from_static(default)
        } else {
            HeaderValue::from_str(&items.join(", ")).unwrap_or(HeaderValue::from_static(default))
        }
    };
    out.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        join(&cors.allowed_methods, DEFAULT_METHODS),
    );
    out.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        join(&cors.allowed_headers, DEFAULT_HEADERS),
    );
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(cors.max_age_secs));
}

/// Headers on an actual response to an allowed origin.
pub fn response_headers(cors: &CorsSpec, origin: &HeaderValue, out: &mut HeaderMap) {
    let wildcard = cors.allowed_origins.iter().any(|o| o == "*");
    if wildcard {
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    } else {
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.append(VARY, HeaderValue::from_static("origin"));
    }
    if cors.allow_credentials {
        out.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !cors.expose_headers.is_empty()
        && let Ok(value) = HeaderValue::from_str(&cors.expose_headers.join(", "))
    {
        out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, value);
    }
}
