//! The log explorer page: plain HTML, CSS and JavaScript embedded in the binary (no
//! CDN, no build step), calling the query API from the browser.

use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, header};

const INDEX: &str = include_str!("../../assets/explorer.html");
const SCRIPT: &str = include_str!("../../assets/explorer.js");
const STYLE: &str = include_str!("../../assets/explorer.css");

/// The page may only load its own scripts and styles and talk to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /explorer/`
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /explorer/explorer.js`
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /explorer/explorer.css`
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /` and `GET /explorer`: to the page.
pub async fn to_index() -> Redirect {
    Redirect::temporary("/explorer/")
}
