//! The gateway's answer to one request as its data path carries it: a response whose map
//! holds the headers the gateway set (all of them, unless the answer was relayed from
//! an HTTP/1.1 upstream), the upstream's head lines as received beside it, and the
//! request id to send. The gateway's own HTTP/1.1 server (`h1::response`) writes the
//! three without merging them into one map; hyper's and axum's paths get one response
//! ([`Answer::into_response`]).

use axum::response::Response;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, StatusCode};
use service_kit::request_context::X_REQUEST_ID;

use crate::http1::agreed_length;
use crate::proxy::RequestId;
use crate::proxy::relayed::RelayedHeaders;

/// One request's answer (see the module docs).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) response: Response,
    /// An HTTP/1.1 upstream's head lines, relayed as received; the headers in
    /// `response` come after them.
    pub(crate) relayed: Option<RelayedHeaders>,
    /// The `X-Request-Id` to send, in place of any other.
    pub(crate) request_id: Option<RequestId>,
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Self {
            response,
            relayed: None,
            request_id: None,
        }
    }
}

impl Answer {
    /// Moves the relayed lines into the response's map, in front of the headers the
    /// gateway set there (for code that reads or replaces headers of the answer).
    pub(crate) fn merge(&mut self) {
        let Some(relayed) = self.relayed.take() else {
            return;
        };
        let set = std::mem::take(self.response.headers_mut());
        let headers = self.response.headers_mut();
        relayed.append_to(headers);
        append_all(headers, set);
    }

    /// The answer as one response, for hyper and axum: merged, the request id set, and
    /// its `Content-Length` one number, or none where the status allows no body.
    pub(crate) fn into_response(mut self) -> Response {
        self.merge();
        if let Some(id) = &self.request_id {
            self.response
                .headers_mut()
                .insert(X_REQUEST_ID.clone(), id.to_header_value());
        }
        one_length(&mut self.response);
        self.response
    }
}

/// Leaves `response` at most one `Content-Length`, a number (RFC 9110 §8.6: a list of
/// one repeated value, which an upstream may send, is not one a sender may forward, and
/// HTTP/2 refuses it), and none on a `1xx` or `204`.
fn one_length(response: &mut Response) {
    let status = response.status();
    let headers = response.headers_mut();
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let (Some(first), more) = (lengths.next(), lengths.next().is_some()) else {
        return;
    };
    if !more && first.as_bytes().iter().all(u8::is_ascii_digit) && !first.is_empty() {
        if status.is_informational() || status == StatusCode::NO_CONTENT {
            headers.remove(CONTENT_LENGTH);
        }
        return;
    }
    let agreed = agreed_length(
        headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    headers.remove(CONTENT_LENGTH);
    if let (Ok(Some(length)), false) = (
        agreed,
        status.is_informational() || status == StatusCode::NO_CONTENT,
    ) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
}

/// Appends every value of `from` to `headers` (`Extend` would replace the values of
/// names `headers` already has).
fn append_all(headers: &mut HeaderMap, from: HeaderMap) {
    let mut current = None;
    for (name, value) in from {
        if let Some(name) = name {
            current = Some(name);
        }
        if let Some(name) = &current {
            headers.append(name.clone(), value);
        }
    }
}
