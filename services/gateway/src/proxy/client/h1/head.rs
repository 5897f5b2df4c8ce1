//! Response heads: parsed with `httparse` into the lines as received ([`RawHeaders`],
//! no map: the gateway relays them), and the framing of the body that follows (RFC 9112
//! §6.3).

use std::io;
use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{Method, StatusCode, Version};

use super::body::{Chunk, Framing};
use super::invalid;
use crate::http1::{MAX_HEADERS, RawHeaders, Seen, last_coding_is_chunked, note_spans};
use crate::proxy::relayed::raw_connection_has;

/// A parsed response head.
pub(super) struct ResponseHead {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    pub(super) headers: RawHeaders,
    pub(super) seen: Seen,
}

/// Parses a response head at the start of `buf` and splits it off; `None` while it is
/// incomplete. The lines keep the head's bytes instead of being copied; `spans` is room
/// to note where they lie.
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
    let seen = Seen::of(response.headers);
    // Where each name and value lies in `buf`, to slice them once the head is split off.
    note_spans(response.headers, buf.as_ptr(), spans);
    let head = buf.split_to(length).freeze();
    Ok(Some(ResponseHead {
        status,
        version,
        headers: RawHeaders::new(head, spans),
        seen,
    }))
}

/// How the response body is delimited (RFC 9112 §6.3), whether the connection can carry
/// another request afterwards, and whether the head's `Content-Length` is to be left out
/// (beside `Transfer-Encoding` it does not describe the body the client will get).
pub(super) fn response_framing(
    method: &Method,
    status: StatusCode,
    version: Version,
    headers: &RawHeaders,
    seen: Seen,
) -> io::Result<(Framing, bool, bool)> {
    let keep_alive =
        version == Version::HTTP_11 && !(seen.connection && raw_connection_has(headers, "close"));
    // RFC 9112 §6.3: a length beside the coding is removed before forwarding, and such a
    // message (a smuggling attempt, or a broken server) does not get to frame another
    // one on this connection; also when its own body has no framing (`HEAD`, `204`...).
    let smuggled_length = seen.transfer_encoding && seen.content_length;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((
            Framing::Length(0),
            keep_alive && status != StatusCode::SWITCHING_PROTOCOLS && !smuggled_length,
            smuggled_length,
        ));
    }
    if seen.transfer_encoding {
        // RFC 9112 §6.1: an HTTP/1.0 message framed by a coding is faulty.
        if version == Version::HTTP_10 {
            return Err(invalid("Transfer-Encoding in an HTTP/1.0 response"));
        }
        let chunked = last_coding_is_chunked(headers.values("transfer-encoding"));
        return Ok(if chunked {
            (
                Framing::Chunked(Chunk::Size),
                keep_alive && !smuggled_length,
                smuggled_length,
            )
        } else {
            (Framing::UntilClose, false, smuggled_length)
        });
    }
    let length = seen
        .lengths
        .agreed()
        .map_err(|error| invalid(&format!("{error} in the response")))?;
    Ok(match length {
        Some(length) => (Framing::Length(length), keep_alive, false),
        None => (Framing::UntilClose, false, false),
    })
}
