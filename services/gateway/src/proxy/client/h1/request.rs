//! The request side: how a request body is framed and written, and the request head.

use std::io::{self, Write as _};

use axum::body::Body;
use bytes::Bytes;
use http::{Method, header};
use hyper::body::Body as HttpBody;

use super::super::target::Target;
use super::{RequestHead, invalid};
use crate::proxy::headers::{Forwarding, line};

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestFraming {
    /// No body and no length (GET, HEAD, DELETE... without a body).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (a streamed body of unknown length).
    Chunked,
}

impl RequestFraming {
    pub(super) fn of(method: &Method, body: &Body) -> Self {
        if body.is_end_stream() {
            // Methods whose requests normally carry a body say that this one is empty.
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                Self::Length(0)
            } else {
                Self::Empty
            }
        } else {
            body.size_hint().exact().map_or(Self::Chunked, Self::Length)
        }
    }
}

/// A request body being sent.
pub(super) struct Upload {
    /// `None` once its end was encoded.
    pub(super) body: Option<Body>,
    pub(super) framing: RequestFraming,
    /// Body bytes encoded so far.
    pub(super) sent: u64,
    /// Bytes of the write buffer already written.
    pub(super) written: usize,
}

impl Upload {
    pub(super) fn encode_data(&mut self, buf: &mut Vec<u8>, data: &Bytes) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.sent += data.len() as u64;
        match self.framing {
            RequestFraming::Length(length) if self.sent > length => {
                return Err(invalid("the request body is longer than its length"));
            }
            RequestFraming::Chunked => {
                write!(buf, "{:x}\r\n", data.len())?;
                buf.extend_from_slice(data);
                buf.extend_from_slice(b"\r\n");
                return Ok(());
            }
            RequestFraming::Length(_) | RequestFraming::Empty => {}
        }
        buf.extend_from_slice(data);
        Ok(())
    }

    pub(super) fn encode_end(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        match self.framing {
            RequestFraming::Length(length) if self.sent != length => {
                Err(invalid("the request body is shorter than its length"))
            }
            RequestFraming::Chunked => {
                buf.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
            RequestFraming::Length(_) | RequestFraming::Empty => Ok(()),
        }
    }
}

/// Writes the request line and headers: origin form under the endpoint's base path,
/// the endpoint's `Host`, the forwarding headers and the body's own framing in place of
/// any the request had.
pub(super) fn encode_head(
    buf: &mut Vec<u8>,
    target: &Target,
    head: &RequestHead<'_>,
    framing: RequestFraming,
) {
    buf.extend_from_slice(head.method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.base_path.as_bytes());
    // `OPTIONS *` and other non-origin forms have no meaning under a base path; the
    // absolute form a client may send is passed on as its path.
    let path = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    buf.extend_from_slice(if path.starts_with('/') { path } else { "/" }.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    buf.extend_from_slice(target.host.as_bytes());
    buf.extend_from_slice(b"\r\n");
    let sent = head.headers.iter().filter(|(name, _)| {
        *name != header::HOST
            && *name != header::CONTENT_LENGTH
            && *name != header::TRANSFER_ENCODING
            && !Forwarding::replaces(name)
    });
    for (name, value) in sent {
        line(buf, name.as_str().as_bytes(), value.as_bytes());
    }
    head.forwarding.write(buf);
    match framing {
        RequestFraming::Empty => {}
        RequestFraming::Length(length) => {
            // Writing into a `Vec` cannot fail.
            let _ = write!(buf, "content-length: {length}\r\n");
        }
        RequestFraming::Chunked => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    buf.extend_from_slice(b"\r\n");
}
