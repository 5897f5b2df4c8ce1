//! The `relay` target's model of an upstream answer (what a valid one is, and how a
//! client reads it), kept apart from the target's properties.

use super::Ask;

/// A valid final answer of the upstream: its status and the body a client must get
/// (empty for `HEAD`, `204`, `304`).
pub(crate) struct Valid {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// The tokens of the final head's `Connection` lines.
    pub(crate) connection: Vec<Vec<u8>>,
}

/// The upstream's answer as a client would read it when it is valid: interim `1xx`
/// heads (not `101`) skipped, one final head httparse accepts, one framing at most, one
/// agreed length or a complete `chunked` body. `None` for anything else.
pub(crate) fn valid_answer(mut answer: &[u8], ask: Ask) -> Option<Valid> {
    loop {
        let mut lines = vec![httparse::EMPTY_HEADER; 256];
        let mut response = httparse::Response::new(&mut lines);
        let httparse::Status::Complete(end) = response.parse(answer).ok()? else {
            return None;
        };
        let status = response.code?;
        if (100..200).contains(&status) {
            if status == 101 {
                return None;
            }
            answer = &answer[end..];
            continue;
        }
        let rest = &answer[end..];
        let values = |name: &str| {
            response
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
                .collect::<Vec<_>>()
        };
        let encodings = values("transfer-encoding");
        let lengths = values("content-length");
        if response.version == Some(0) && !encodings.is_empty() {
            // RFC 9112 §6.1: faulty framing.
            return None;
        }
        let bodiless = ask == Ask::Head || status == 204 || status == 304;
        if status == 204 && !(encodings.is_empty() && lengths.is_empty()) {
            return None;
        }
        let body = match (encodings.as_slice(), lengths.as_slice()) {
            (_, _) if bodiless => Vec::new(),
            ([], []) => {
                // HTTP/1.1 answers without a framing end with the connection.
                rest.to_vec()
            }
            ([encoding], []) => {
                if !trim(encoding).eq_ignore_ascii_case(b"chunked") {
                    return None;
                }
                let (body, _) = dechunk(rest)?;
                body
            }
            ([], lengths) => {
                let length = agreed_length(lengths)?;
                rest.get(..usize::try_from(length).ok()?)?.to_vec()
            }
            _ => return None,
        };
        let connection = values("connection")
            .iter()
            .flat_map(|line| line.split(|&b| b == b','))
            .map(|token| trim(token).to_vec())
            .collect();
        return Some(Valid {
            status,
            body,
            connection,
        });
    }
}

/// The one length every `Content-Length` line (each maybe a list) gives.
pub(crate) fn agreed_length(lines: &[&[u8]]) -> Option<u64> {
    let mut agreed = None;
    for line in lines {
        for item in line.split(|&b| b == b',') {
            let item = trim(item);
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) || item.len() > 15 {
                return None;
            }
            let n: u64 = std::str::from_utf8(item).ok()?.parse().ok()?;
            if agreed.is_some_and(|a| a != n) {
                return None;
            }
            agreed = Some(n);
        }
    }
    agreed
}

pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// A complete `chunked` body at the start of `bytes` (extensions allowed, trailers
/// skipped): the data, and how many bytes it took.
pub(crate) fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut at = 0;
    let mut data = Vec::new();
    loop {
        let line_end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
        let line = &bytes[at..line_end];
        // Strictly: hex digits first, extensions of visible text only.
        let (size, extensions) =
            line.split_at(line.iter().position(|&b| b == b';').unwrap_or(line.len()));
        if !extensions
            .iter()
            .all(|&b| b == b'\t' || b >= b' ' && b != 0x7f)
        {
            return None;
        }
        if size.is_empty() || size.len() > 12 || !size.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let size = usize::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailer lines, then the empty line.
            loop {
                let end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
                let empty = end == at;
                if !empty && !is_field_line(&bytes[at..end]) {
                    return None;
                }
                at = end + 2;
                if empty {
                    return Some((data, at));
                }
            }
        }
        data.extend_from_slice(bytes.get(at..at + size)?);
        at += size;
        if bytes.get(at..at + 2)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
}

/// Whether `line` is `name: value` with a token for a name (RFC 9110 §5.1).
pub(crate) fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || b >= b' ' && b != 0x7f)
}

/// The values of the lines named `name` in whatever head the upstream wrote (parsed
/// loosely: its answer need not be valid).
pub(crate) fn loose_values<'a>(answer: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    answer
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            trim(&line[..colon])
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| trim(&line[colon + 1..]))
        })
        .collect()
}
