//! The gateway's answer to one request as its data path carries it: a response whose map
//! holds the headers the gateway set (all of them, unless the answer was relayed from
//! an HTTP/1.1 upstream), the upstream's head lines as received beside it, and the
//! request id to send. The gateway's own HTTP/1.1 server (`h1::response`) writes the
//! three without merging them into one map; hyper's and axum's paths get one response
//! ([`Answer::into_response`]).

use axum::response::Response;
use http::HeaderMap;
use service_kit::request_context::X_REQUEST_ID;

use crate::proxy::RequestId;
use crate::proxy::headers::RelayedHeaders;

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

    /// The answer as one response, for hyper and axum.
    pub(crate) fn into_response(mut self) -> Response {
        self.merge();
        if let Some(id) = &self.request_id {
            self.response
                .headers_mut()
                .insert(X_REQUEST_ID.clone(), id.to_header_value());
        }
        self.response
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
