//! HTTP/1.1 heads as the gateway reads them on both of its sides (the clients' requests,
//! `edge::h1`, and the upstreams' answers, `proxy::client::h1`): header lines parsed by
//! `httparse` become a `HeaderMap` whose values share the head's bytes (requests), or
//! stay as the received lines ([`RawHeaders`], answers relayed without a map), and the
//! framing headers met on the way are noted so that framing decisions look up only
//! those present.

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
    /// The `Content-Length` values met, folded.
    pub(crate) lengths: Lengths,
}

impl Seen {
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        self.connection |= name == header::CONNECTION;
        self.transfer_encoding |= name == header::TRANSFER_ENCODING;
        if name == header::CONTENT_LENGTH {
            self.content_length = true;
            self.lengths.add(value);
        }
        self.expect |= name == header::EXPECT;
        self.upgrade |= name == header::UPGRADE;
    }

    /// The framing headers among the names of `lines` (in any case).
    pub(crate) fn of(lines: &[httparse::Header<'_>]) -> Self {
        let mut seen = Self::default();
        for line in lines {
            let name = line.name.as_bytes();
            // Lengths first: most names differ from all five in length.
            match name.len() {
                6 => seen.expect |= name.eq_ignore_ascii_case(b"expect"),
                7 => seen.upgrade |= name.eq_ignore_ascii_case(b"upgrade"),
                10 => seen.connection |= name.eq_ignore_ascii_case(b"connection"),
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    seen.content_length = true;
                    seen.lengths.add(line.value);
                }
                17 => seen.transfer_encoding |= name.eq_ignore_ascii_case(b"transfer-encoding"),
                _ => {}
            }
        }
        seen
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
        seen.note(&name, value.as_bytes());
        headers.append(name, value);
    }
    Ok((headers, seen))
}

/// A head's header lines as received: the head's bytes and where each line's name and
/// value lie in them. Reading an answer this way costs no map, no name parsing and no
/// value validation beyond `httparse`'s own, which accepts exactly the names and values
/// `HeaderName` and `HeaderValue` accept (tokens; visible ASCII, spaces, tabs and
/// obs-text), so [`RawHeaders::append_to`] never meets a line it cannot keep.
#[derive(Clone)]
pub(crate) struct RawHeaders {
    head: Bytes,
    /// Name start and end, value start and end, per line (heads are at most 64 KiB
    /// long).
    lines: Box<[[u32; 4]]>,
}

impl RawHeaders {
    /// The lines at `spans` of `head` (as [`note_spans`] noted them).
    pub(crate) fn new(head: Bytes, spans: &[[usize; 4]]) -> Self {
        let lines = spans
            .iter()
            .map(|span| span.map(|at| u32::try_from(at).unwrap_or(u32::MAX)))
            .collect();
        Self { head, lines }
    }

    /// Each line's name (as received, in any case) and value.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines
            .iter()
            .map(|&[name_start, name_end, value_start, value_end]| {
                let at = |start: u32, end: u32| &self.head[start as usize..end as usize];
                (at(name_start, name_end), at(value_start, value_end))
            })
    }

    /// The values of the lines named `name` (lowercase).
    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.iter()
            .filter(move |(line, _)| line.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// Appends the lines `keep` accepts to `headers`, their values sharing the head's
    /// bytes. A line no map could hold (which `httparse` does not let through) is left
    /// out.
    pub(crate) fn append_to(&self, headers: &mut HeaderMap, keep: impl Fn(&[u8], &[u8]) -> bool) {
        for &[name_start, name_end, value_start, value_end] in &self.lines {
            let (value_start, value_end) = (value_start as usize, value_end as usize);
            let raw_name = &self.head[name_start as usize..name_end as usize];
            if !keep(raw_name, &self.head[value_start..value_end]) {
                continue;
            }
            let value = self.head.slice(value_start..value_end);
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(raw_name),
                HeaderValue::from_maybe_shared(value),
            ) {
                headers.append(name, value);
            }
        }
    }
}

impl std::fmt::Debug for RawHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values may be credentials (`Set-Cookie`).
        f.debug_list()
            .entries(self.iter().map(|(name, _)| String::from_utf8_lossy(name)))
            .finish()
    }
}

/// The length the `Content-Length` line `values` agree on (RFC 9110 §8.6: a list of one
/// repeated value is that value), `None` without one, `Err` when a value is not a
/// number or two differ.
pub(crate) fn agreed_length<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<u64>, &'static str> {
    let mut lengths = Lengths::default();
    for value in values {
        lengths.add(value);
    }
    lengths.agreed()
}

/// `Content-Length` values folded as they are met (see [`agreed_length`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lengths {
    length: Option<u64>,
    fault: Option<&'static str>,
}

impl Lengths {
    /// Folds in one line's value.
    pub(crate) fn add(&mut self, value: &[u8]) {
        if self.fault.is_some() {
            return;
        }
        // The usual value, one number, without splitting it as a list.
        if let Some(parsed) = digits(value) {
            self.agree(parsed);
            return;
        }
        for part in std::str::from_utf8(value).unwrap_or("x").split(',') {
            let part = part.trim();
            let parsed = part
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse::<u64>().ok())
                .flatten();
            match parsed {
                Some(parsed) => self.agree(parsed),
                None => self.fault = Some("invalid Content-Length"),
            }
        }
    }

    fn agree(&mut self, parsed: u64) {
        if self.length.is_some_and(|seen| seen != parsed) {
            self.fault
                .get_or_insert("conflicting Content-Length values");
        }
        self.length = Some(parsed);
    }

    /// The length the values agree on, `None` without one.
    pub(crate) fn agreed(self) -> Result<Option<u64>, &'static str> {
        match self.fault {
            Some(fault) => Err(fault),
            None => Ok(self.length),
        }
    }
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

/// Whether the last coding of the `Transfer-Encoding` line `values` is `chunked` (RFC
/// 9112 §6.1: otherwise the body is not delimited by the coding).
pub(crate) fn last_coding_is_chunked<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    values
        .last()
        .and_then(|codings| std::str::from_utf8(codings).ok())
        .and_then(|codings| codings.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(values: &[&'static str]) -> Result<Option<u64>, &'static str> {
        agreed_length(values.iter().map(|value| value.as_bytes()))
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
        let chunked = |value: &'static str| last_coding_is_chunked([value.as_bytes()].into_iter());
        assert!(chunked("chunked"));
        assert!(chunked("gzip, Chunked"));
        assert!(!chunked("chunked, gzip"));
        assert!(!chunked("gzip"));
    }
}
