//! HTTP/1.1 heads as the gateway reads them on both of its sides (the clients' requests,
//! `edge::h1`, and the upstreams' answers, `proxy::client::h1`): header lines parsed by
//! `httparse` become a `HeaderMap` whose values share the head's bytes, and the framing
//! headers met on the way are noted so that framing decisions look up only those present.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Most header lines in a head (hyper's default too).
pub(crate) const MAX_HEADERS: usize = 100;

/// Which framing-relevant headers a head has.
#[derive(Debug, Clone, Copy, Default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent flags, one per header name, set in one pass"
)]
pub(crate) struct Seen {
    pub(crate) connection: bool,
    pub(crate) transfer_encoding: bool,
    pub(crate) content_length: bool,
    pub(crate) expect: bool,
    pub(crate) upgrade: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName) {
        self.connection |= name == header::CONNECTION;
        self.transfer_encoding |= name == header::TRANSFER_ENCODING;
        self.content_length |= name == header::CONTENT_LENGTH;
        self.expect |= name == header::EXPECT;
        self.upgrade |= name == header::UPGRADE;
    }
}

/// Notes in `spans` where each header line's name and value lie, as offsets from
/// `start` (the first byte of the buffer `lines` were parsed from), so that they can be
/// sliced from the head once it is split off that buffer.
pub(crate) fn note_spans(
    lines: &[httparse::Header<'_>],
    start: *const u8,
    spans: &mut Vec<[usize; 4]>,
) {
    let start = start as usize;
    spans.clear();
    spans.extend(lines.iter().map(|line| {
        let name = line.name.as_ptr() as usize - start;
        let value = line.value.as_ptr() as usize - start;
        [
            name,
            name + line.name.len(),
            value,
            value + line.value.len(),
        ]
    }));
}

/// The header lines at `spans` of `head`, with `room` more entries free for what the
/// gateway adds; `Err` names the first invalid part.
pub(crate) fn header_map(
    head: &Bytes,
    spans: &[[usize; 4]],
    room: usize,
) -> Result<(HeaderMap, Seen), &'static str> {
    let mut headers = HeaderMap::with_capacity(spans.len() + room);
    let mut seen = Seen::default();
    for &[name_start, name_end, value_start, value_end] in spans {
        let name = HeaderName::from_bytes(&head[name_start..name_end])
            .map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_start..value_end))
            .map_err(|_| "invalid header value")?;
        seen.note(&name);
        headers.append(name, value);
    }
    Ok((headers, seen))
}

/// The length the `Content-Length` lines of `headers` agree on (RFC 9110 §8.6: a list of
/// one repeated value is that value), `None` without one, `Err` when a value is not a
/// number or two differ.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for value in &headers.get_all(header::CONTENT_LENGTH) {
        // The usual value, one number, without splitting it as a list.
        if let Some(parsed) = digits(value.as_bytes()) {
            if length.is_some_and(|seen| seen != parsed) {
                return Err("conflicting Content-Length values");
            }
            length = Some(parsed);
            continue;
        }
        for part in value.to_str().unwrap_or("x").split(',') {
            let part = part.trim();
            let parsed = part
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or("invalid Content-Length")?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err("conflicting Content-Length values");
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

/// `bytes` as a decimal number if they are only digits (and it fits).
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    bytes.iter().try_fold(0_u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Whether the last coding of the `Transfer-Encoding` lines of `headers` is `chunked`
/// (RFC 9112 §6.1: otherwise the body is not delimited by the coding).
pub(crate) fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|codings| codings.to_str().ok())
        .and_then(|codings| codings.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(values: &[&'static str]) -> Result<Option<u64>, &'static str> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::CONTENT_LENGTH, HeaderValue::from_static(value));
        }
        content_length(&headers)
    }

    #[test]
    fn content_lengths_must_be_numbers_that_agree() {
        assert_eq!(lengths(&[]), Ok(None));
        assert_eq!(lengths(&["12"]), Ok(Some(12)));
        assert_eq!(lengths(&["12, 12", "12"]), Ok(Some(12)));
        assert!(lengths(&["12", "13"]).is_err());
        assert_eq!(lengths(&["0"]), Ok(Some(0)));
        assert_eq!(
            lengths(&["18446744073709551615"]),
            Ok(Some(u64::MAX)),
            "twenty digits go the long way"
        );
        for bad in ["+12", "-1", "0x10", "", "1 2", "99999999999999999999999"] {
            assert!(lengths(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_final_chunked_coding_frames_a_body() {
        let chunked = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.append(header::TRANSFER_ENCODING, HeaderValue::from_static(value));
            is_chunked(&headers)
        };
        assert!(chunked("chunked"));
        assert!(chunked("gzip, Chunked"));
        assert!(!chunked("chunked, gzip"));
        assert!(!chunked("gzip"));
    }
}
