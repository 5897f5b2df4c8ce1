//! The head of an answer to a client: the status line, the upstream's lines relayed as
//! received, the gateway's own (request id, security headers, `Date`) and the framing
//! the gateway chose, encoded into the connection's write buffer.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;

use crate::edge::SecurityChosen;
use crate::proxy::headers::{connection_bytes_have, line};
use crate::proxy::relayed::RelayedHeaders;

/// How the body of an answer is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body is sent (`HEAD`, `1xx`, `204`, `304`).
    None,
    Length(u64),
    Chunked,
}

/// The headers of an answer: the upstream's lines relayed as received, then those the
/// gateway set, and the request id in place of any other.
pub(super) struct AnswerHead<'a> {
    pub(super) headers: &'a http::HeaderMap,
    pub(super) relayed: Option<&'a RelayedHeaders>,
    pub(super) request_id: Option<&'a [u8]>,
}

impl AnswerHead<'_> {
    /// Every line, names in any case (relayed ones as received).
    fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let set = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
        self.relayed
            .into_iter()
            .flat_map(RelayedHeaders::lines)
            .chain(set)
    }

    /// The length the upstream declared (for the answer to a `HEAD`).
    pub(super) fn declared_length(&self) -> Option<u64> {
        let lengths = self
            .lines()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"content-length"))
            .map(|(_, value)| value);
        crate::http1::agreed_length(lengths).ok().flatten()
    }
}

/// What the head encoder does with a header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ContentLength,
    Connection,
    /// `Transfer-Encoding` and `Keep-Alive`: the gateway frames the answer itself.
    Framing,
    /// `Server`, `X-Powered-By` (see `edge::secure_response`).
    Banner,
    RequestId,
    Date,
    ContentTypeOptions,
    FrameOptions,
    Other,
}

impl Kind {
    /// The kind of a header `name` (in any case).
    fn of(name: &[u8]) -> Self {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        // Lengths first: most names differ from all of them in length.
        match name.len() {
            4 if is(b"date") => Self::Date,
            6 if is(b"server") => Self::Banner,
            10 if is(b"connection") => Self::Connection,
            10 if is(b"keep-alive") => Self::Framing,
            12 if is(b"x-request-id") => Self::RequestId,
            12 if is(b"x-powered-by") => Self::Banner,
            14 if is(b"content-length") => Self::ContentLength,
            15 if is(b"x-frame-options") => Self::FrameOptions,
            17 if is(b"transfer-encoding") => Self::Framing,
            22 if is(b"x-content-type-options") => Self::ContentTypeOptions,
            _ => Self::Other,
        }
    }
}

/// The status line and headers, with the gateway's security headers (see
/// `edge::secure_response`). A `Connection: close` among the headers sets `close`.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    head: &AnswerHead<'_>,
    announced: Option<u64>,
    framing: Framing,
    close: &mut bool,
) {
    if status == StatusCode::OK {
        // Most answers: a constant, copied inline.
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut dated = false;
    let mut chosen = SecurityChosen::default();
    for (name, value) in head.lines() {
        match Kind::of(name) {
            Kind::Connection => {
                *close |= connection_bytes_have(value, "close");
                continue;
            }
            // The length is written below, once, as one number.
            Kind::ContentLength | Kind::Framing | Kind::Banner => continue,
            Kind::RequestId if head.request_id.is_some() => continue,
            Kind::Date => dated = true,
            Kind::ContentTypeOptions => chosen.sniffing = true,
            Kind::FrameOptions => chosen.framing = true,
            Kind::RequestId | Kind::Other => {}
        }
        line(out, name, value);
    }
    // Constant names (and lines) are copied inline, not through `memcpy` calls.
    if let Some(id) = head.request_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(id);
        out.extend_from_slice(b"\r\n");
    }
    chosen.write_missing(out);
    if !dated {
        let date = DATE.with_borrow_mut(|date| *date.now());
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&date);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(length) = announced {
        let mut digits = [0_u8; 20];
        line(out, b"content-length", decimal(length, &mut digits));
    } else if framing == Framing::Chunked {
        line(out, b"transfer-encoding", b"chunked");
    }
    if *close {
        line(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written at the end of `digits` (no formatting machinery).
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

thread_local! {
    /// The `Date` of this second, formatted once per second per thread.
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { second: 0, text: [0; 29] }) };
}

/// An IMF-fixdate (RFC 9110 §5.6.7) and the second it is for.
struct CachedDate {
    second: u64,
    text: [u8; 29],
}

impl CachedDate {
    fn now(&mut self) -> &[u8; 29] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.text
                .copy_from_slice(httpdate::fmt_http_date(now).as_bytes());
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn head(
        status: StatusCode,
        headers: &[(&'static str, &'static str)],
        framing: Framing,
        announced: Option<u64>,
    ) -> (String, bool) {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        let mut out = Vec::new();
        let mut close = false;
        let head = AnswerHead {
            headers: &map,
            relayed: None,
            request_id: None,
        };
        encode_head(&mut out, status, &head, announced, framing, &mut close);
        (String::from_utf8(out).expect("text"), close)
    }

    #[test]
    fn the_gateway_frames_the_answer_itself_and_dates_it() {
        let (text, close) = head(
            StatusCode::OK,
            &[
                ("content-type", "text/plain"),
                ("content-length", "999"),
                ("transfer-encoding", "chunked"),
                ("keep-alive", "timeout=5"),
            ],
            Framing::Length(2),
            Some(2),
        );
        assert!(
            text.starts_with(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\
                 x-content-type-options: nosniff\r\nx-frame-options: DENY\r\ndate: "
            ),
            "{text}"
        );
        assert!(text.ends_with("GMT\r\ncontent-length: 2\r\n\r\n"), "{text}");
        assert!(!close);
    }

    #[test]
    fn a_connection_close_of_the_answer_closes_and_chunked_is_announced() {
        let (text, close) = head(
            StatusCode::BAD_GATEWAY,
            &[
                ("connection", "Close"),
                ("date", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ],
            Framing::Chunked,
            None,
        );
        assert_eq!(
            text,
            "HTTP/1.1 502 Bad Gateway\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             x-content-type-options: nosniff\r\nx-frame-options: DENY\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        assert!(close);
    }

    #[test]
    fn lengths_are_written_in_decimal() {
        for n in [0, 7, 10, 4096, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn a_304_gets_its_kept_length_once_and_no_banner() {
        // `write` announces the length the upstream's lines agree on (a list here).
        let (text, _) = head(
            StatusCode::NOT_MODIFIED,
            &[
                ("content-length", "42, 42"),
                ("date", "x"),
                ("server", "nginx/1.2"),
                ("x-powered-by", "PHP"),
                ("x-frame-options", "SAMEORIGIN"),
            ],
            Framing::None,
            Some(42),
        );
        // The upstream's framing policy wins; its software banner does not get out.
        assert_eq!(
            text,
            "HTTP/1.1 304 Not Modified\r\ndate: x\r\nx-frame-options: SAMEORIGIN\r\n\
             x-content-type-options: nosniff\r\ncontent-length: 42\r\n\r\n"
        );
    }
}
