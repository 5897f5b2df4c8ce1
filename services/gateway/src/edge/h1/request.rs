//! Client request heads: parsed with `httparse` (hyper's parser) into request parts whose
//! header values share the head's bytes, checked for framing (RFC 9112 §6), and sorted
//! into the requests the gateway's connection loop serves and those it hands to hyper.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Method, Request, StatusCode, Uri, Version};

use crate::http1::{MAX_HEADERS, header_map, note_spans};
use crate::proxy::headers::connection_has;

/// What the start of a connection's read buffer holds.
pub(super) enum Head {
    /// Not a whole head yet.
    Partial,
    /// A request the loop serves. Its body (`body_len` bytes, 0 without one) follows
    /// in the buffer or is still to be read.
    Serve {
        parts: Parts,
        body_len: usize,
        /// The client asked to close the connection after the answer.
        close: bool,
    },
    /// hyper serves the connection from this request on: `head` was split off the
    /// buffer and goes back in front of it.
    HandOff { head: Bytes },
    /// The HTTP/2 prior-knowledge preface (h2c): hyper serves the connection.
    Http2,
    /// Refused; the connection closes after the answer.
    Refuse(Refusal),
}

/// Why a head is refused, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) detail: &'static str,
}

impl Refusal {
    const fn bad_request(code: &'static str, detail: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            detail,
        }
    }

    /// The head is larger than the limit, or has more header lines than are kept.
    pub(super) const TOO_LARGE: Self = Self {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        code: "headers_too_large",
        detail: "The request head is larger than the gateway accepts.",
    };

    /// The head did not arrive whole within the request timeout of its first bytes.
    pub(super) const HEAD_TIMEOUT: Self = Self {
        status: StatusCode::REQUEST_TIMEOUT,
        code: "request_timeout",
        detail: "The request head did not arrive in time.",
    };

    /// The announced body did not arrive within the request timeout.
    pub(super) const BODY_TIMEOUT: Self = Self {
        status: StatusCode::REQUEST_TIMEOUT,
        code: "request_timeout",
        detail: "The request body did not arrive in time.",
    };
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Parses the head at the start of `buf` (the connection's `first` if so). A head the
/// loop serves, hands off or refuses is split off `buf`. `spans` is room to note where
/// the header lines lie; a head longer than `max_head` is refused (431); bodies longer
/// than `max_buffered` are left to hyper, which
/// streams them.
pub(super) fn parse(
    buf: &mut BytesMut,
    first: bool,
    spans: &mut Vec<[usize; 4]>,
    max_head: usize,
    max_buffered: usize,
) -> Head {
    if first && buf.first() == Some(&b'P') {
        let seen = buf.len().min(PREFACE.len());
        if buf[..seen] == PREFACE[..seen] {
            return if seen == PREFACE.len() {
                Head::Http2
            } else {
                Head::Partial
            };
        }
    }
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(length)) if length > max_head => {
            return Head::Refuse(Refusal::TOO_LARGE);
        }
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(httparse::Error::TooManyHeaders) => return Head::Refuse(Refusal::TOO_LARGE),
        Err(_) => {
            return Head::Refuse(Refusal::bad_request(
                "invalid_request",
                "The request head is not valid HTTP/1.1.",
            ));
        }
    };
    let start = buf.as_ptr() as usize;
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version)
    else {
        return Head::Refuse(Refusal::bad_request(
            "invalid_request",
            "The request head is not valid HTTP/1.1.",
        ));
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Head::Refuse(Refusal::bad_request(
            "invalid_method",
            "The request method is not valid.",
        ));
    };
    let path_start = path.as_ptr() as usize - start;
    let path_end = path_start + path.len();
    note_spans(request.headers, buf.as_ptr(), spans);
    let head = buf.split_to(length).freeze();
    // Room for what the gateway adds before forwarding (ids, forwarded headers).
    let Ok((headers, seen)) = header_map(&head, spans, 4) else {
        return Head::Refuse(Refusal::bad_request(
            "invalid_header",
            "A request header is not valid.",
        ));
    };
    if seen.transfer_encoding && seen.content_length {
        // RFC 9112 §6.3: a request framed both ways is how requests are smuggled.
        return Head::Refuse(Refusal::bad_request(
            "conflicting_framing",
            "The request has both Content-Length and Transfer-Encoding.",
        ));
    }
    let body_len = if seen.content_length {
        match seen.lengths.agreed() {
            Ok(length) => length.unwrap_or(0),
            Err(_) => {
                return Head::Refuse(Refusal::bad_request(
                    "invalid_content_length",
                    "The Content-Length header is not one valid length.",
                ));
            }
        }
    } else {
        0
    };
    // What hyper does better or alone: HTTP/1.0 keep-alive rules, streamed (chunked
    // or large) bodies, `100 Continue`, upgrades (WebSocket) and tunnels.
    let hand_off = version == 0
        || seen.transfer_encoding
        || seen.expect
        || seen.upgrade
        || method == Method::CONNECT
        || body_len > max_buffered as u64;
    if hand_off {
        return Head::HandOff { head };
    }
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path_start..path_end)) else {
        return Head::Refuse(Refusal::bad_request(
            "invalid_request_target",
            "The request target is not a valid URI.",
        ));
    };
    let close = seen.connection && connection_has(&headers, "close");
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Head::Serve {
        parts,
        body_len: usize::try_from(body_len).unwrap_or(usize::MAX),
        close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(text.as_bytes());
        let head = parse(&mut buf, true, &mut Vec::new(), 4096, 1024);
        (head, buf)
    }

    fn refusal(text: &str) -> Refusal {
        match parse_all(text).0 {
            Head::Refuse(refusal) => refusal,
            _ => panic!("not refused: {text:?}"),
        }
    }

    #[test]
    fn a_plain_request_is_served_and_its_body_left_in_the_buffer() {
        let (head, rest) =
            parse_all("POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET");
        let Head::Serve {
            parts,
            body_len,
            close,
        } = head
        else {
            panic!("not served");
        };
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri, "/a?b=1");
        assert_eq!(parts.headers["host"], "x");
        assert_eq!((body_len, close), (3, false));
        assert_eq!(&rest[..], b"abcGET");
    }

    #[test]
    fn connection_close_is_noted() {
        let (head, _) = parse_all("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(matches!(head, Head::Serve { close: true, .. }));
    }

    #[test]
    fn framing_conflicts_and_bad_lengths_are_refused_with_400() {
        let both =
            refusal("POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            (both.status, both.code),
            (StatusCode::BAD_REQUEST, "conflicting_framing")
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 4, 5\r\n\r\n",
        ] {
            assert_eq!(refusal(bad).code, "invalid_content_length", "{bad:?}");
        }
        assert_eq!(
            refusal("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n").status,
            StatusCode::BAD_REQUEST
        );
        let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(4096));
        assert_eq!(
            refusal(&long),
            Refusal::TOO_LARGE,
            "a whole head over the limit"
        );
        let many = "X-Many: v\r\n".repeat(MAX_HEADERS + 1);
        assert_eq!(
            refusal(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Refusal::TOO_LARGE
        );
    }

    #[test]
    fn what_hyper_serves_better_is_handed_off_with_the_head_kept() {
        for text in [
            "GET / HTTP/1.0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
            "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n",
        ] {
            match parse_all(text).0 {
                Head::HandOff { head } => assert_eq!(&head[..], text.as_bytes()),
                _ => panic!("not handed off: {text:?}"),
            }
        }
    }

    #[test]
    fn the_http2_preface_is_recognised_only_whole_and_only_first() {
        assert!(matches!(parse_all("PRI * HTTP/2.0\r\n").0, Head::Partial));
        assert!(matches!(
            parse_all("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").0,
            Head::Http2
        ));
        let mut later = BytesMut::from(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..]);
        assert!(matches!(
            parse(&mut later, false, &mut Vec::new(), 200, 0),
            Head::Refuse(_)
        ));
        assert!(matches!(
            parse_all("GET / HTTP/1.1\r\nHost: x\r\n").0,
            Head::Partial
        ));
    }
}
