//! Response heads: parsed with `httparse` into a zero-copy `HeaderMap`, and the framing
//! of the body that follows (RFC 9112 §6.3).

use std::io;
use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};

use super::body::{Chunk, Framing};
use super::invalid;
use crate::http1::{MAX_HEADERS, Seen, content_length, header_map, is_chunked, note_spans};
use crate::proxy::headers::connection_has;

/// A parsed response head.
pub(super) struct ResponseHead {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    pub(super) seen: Seen,
}

/// Parses a response head at the start of `buf` and splits it off; `None` while it is
/// incomplete. Header values share the head's bytes instead of being copied; `spans`
/// is room to note where they lie.
pub(super) fn parse_head(
    buf: &mut BytesMut,
    spans: &mut Vec<[usize; 4]>,
) -> io::Result<Option<ResponseHead>> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(invalid(&format!("invalid response head: {error}"))),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| invalid("invalid response status"))?;
    let version = if response.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each name and value lies in `buf`, to slice them once the head is split off.
    note_spans(response.headers, buf.as_ptr(), spans);
    let head = buf.split_to(length).freeze();
    // Room for what the gateway adds to the response (`X-Request-Id`, rate-limit and
    // CORS headers) without growing the map.
    let (headers, seen) = header_map(&head, spans, 4)
        .map_err(|error| invalid(&format!("{error} in the response")))?;
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        seen,
    }))
}

/// How the response body is delimited (RFC 9112 §6.3) and whether the connection can
/// carry another request afterwards. A `Content-Length` beside `Transfer-Encoding` is
/// removed: it does not describe the body the client will get.
pub(super) fn response_framing(
    method: &Method,
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
    seen: Seen,
) -> io::Result<(Framing, bool)> {
    let keep_alive =
        version == Version::HTTP_11 && !(seen.connection && connection_has(headers, "close"));
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((
            Framing::Length(0),
            keep_alive && status != StatusCode::SWITCHING_PROTOCOLS,
        ));
    }
    if seen.transfer_encoding {
        // RFC 9112 §6.1: an HTTP/1.0 message framed by a coding is faulty.
        if version == Version::HTTP_10 {
            return Err(invalid("Transfer-Encoding in an HTTP/1.0 response"));
        }
        // RFC 9112 §6.3: a length beside the coding is removed before forwarding, and
        // such a message (a smuggling attempt, or a broken server) does not get to
        // frame another one on this connection.
        let chunked = is_chunked(headers);
        let smuggled_length = headers.remove(header::CONTENT_LENGTH).is_some();
        return Ok(if chunked {
            (
                Framing::Chunked(Chunk::Size),
                keep_alive && !smuggled_length,
            )
        } else {
            (Framing::UntilClose, false)
        });
    }
    let length = if seen.content_length {
        content_length(headers).map_err(|error| invalid(&format!("{error} in the response")))?
    } else {
        None
    };
    Ok(match length {
        Some(length) => (Framing::Length(length), keep_alive),
        None => (Framing::UntilClose, false),
    })
}
