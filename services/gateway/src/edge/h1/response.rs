//! Answers to clients: the head encoded into the connection's write buffer, the body
//! framed by its length when it is known (from the body or its `Content-Length`) and
//! `chunked` otherwise (RFC 9112 §6), written together when the body is ready with the
//! head (one `write` for a typical proxied answer).

use std::io;
use std::pin::pin;

use bytes::BytesMut;
use futures_util::FutureExt;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::answer_head::{AnswerHead, Framing, encode_head};
use super::until_answered;
use crate::edge::Answer;
use crate::proxy::RequestId;

/// Body bytes gathered behind the head before they are written.
const MAX_GATHERED: usize = 64 * 1024;

/// How an answer was written.
#[derive(Debug)]
pub(super) enum Written {
    /// Whole, and the connection can carry another request.
    KeepOpen,
    /// Whole, and the connection closes.
    Close,
    /// The body failed before a byte of the answer was sent (an upstream that broke
    /// off its answer, or gave more or fewer bytes than its length): nothing reached
    /// the client, which can still be told (with the answer's request id).
    BodyFailedUnsent(Option<RequestId>),
}

/// Writes `answer` to `stream` through the write buffer `out` (left empty), for a
/// request that was `HEAD` or not, with `Connection: close` when `close`. While the body
/// keeps the answer waiting, the client's side is watched as during the request (`buf`
/// is the connection's read buffer): a client that leaves ends the answer. An error when
/// the answer could not be sent whole after a part of it was (the caller closes the
/// connection, so the client sees it cut).
pub(super) async fn write(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    answer: Answer,
    head_request: bool,
    close: bool,
) -> io::Result<Written> {
    let Answer {
        response,
        relayed,
        request_id,
    } = answer;
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let head = AnswerHead {
        headers: &parts.headers,
        relayed: relayed.as_ref(),
        request_id: request_id.as_ref().map(RequestId::as_bytes),
    };
    let (announced, framing) = framing_of(status, head_request, &head, &body.size_hint());
    let mut close = close;
    encode_head(out, status, &head, announced, framing, &mut close);
    drop(parts);
    drop(relayed);
    let whole = if close {
        Written::Close
    } else {
        Written::KeepOpen
    };
    if framing == Framing::None {
        stream.write_all(out).await?;
        out.clear();
        return Ok(whole);
    }
    let mut body = pin!(body);
    let mut sent: u64 = 0;
    // Whether any of the answer went out (the head waits for a body ready with it).
    let mut begun = false;
    // A fault of the body's cuts the answer once some of it went out; before that, the
    // caller answers in its stead.
    let cut = |begun: bool, error: io::Error| if begun { Err(error) } else { Ok(()) };
    while !body.is_end_stream() {
        // A body ready with the head goes out with it; one that is not yet ready lets
        // the head go first (a client streaming events sees the headers at once).
        let frame = if let Some(frame) = body.frame().now_or_never() {
            frame
        } else {
            flush(stream, out).await?;
            begun = true;
            until_answered(stream, buf, pin!(body.frame()))
                .await
                .ok_or_else(|| io::Error::other("the client left during the answer"))?
        };
        let Some(frame) = frame else { break };
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                cut(begun, io::Error::other(error))?;
                return Ok(Written::BodyFailedUnsent(request_id));
            }
        };
        let Ok(data) = frame.into_data() else {
            // Trailers are not sent on HTTP/1.1 (as hyper does without `TE: trailers`).
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match framing {
            Framing::Length(length) if sent > length => {
                cut(
                    begun,
                    io::Error::other("the body is longer than its length"),
                )?;
                return Ok(Written::BodyFailedUnsent(request_id));
            }
            Framing::Chunked => {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                begun |= gather(stream, out, &data).await?;
                out.extend_from_slice(b"\r\n");
            }
            _ => begun |= gather(stream, out, &data).await?,
        }
    }
    match framing {
        Framing::Length(length) if sent < length => {
            cut(begun, io::Error::other("the body ended before its length"))?;
            return Ok(Written::BodyFailedUnsent(request_id));
        }
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        _ => {}
    }
    flush(stream, out).await?;
    Ok(whole)
}

/// The length to announce for an answer with `status` and `head` to a request that was
/// `HEAD` or not, whose body's size is `hint`, and how the body is sent.
fn framing_of(
    status: StatusCode,
    head_request: bool,
    head: &AnswerHead<'_>,
    hint: &SizeHint,
) -> (Option<u64>, Framing) {
    let declared = || head.declared_length();
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        // A `304` keeps the length it describes (of the resource, RFC 9110 §15.4.5), as
        // one number.
        let kept = (status == StatusCode::NOT_MODIFIED)
            .then(declared)
            .flatten();
        (kept, Framing::None)
    } else if head_request {
        // The length a `GET` would have had: the upstream's, else the body's (not an
        // empty body's 0: the proxy holds one for every HEAD answer it relays).
        (
            declared().or_else(|| hint.exact().filter(|&n| n > 0)),
            Framing::None,
        )
    } else if let Some(exact) = hint.exact() {
        (Some(exact), Framing::Length(exact))
    } else if let Some(length) = declared() {
        (Some(length), Framing::Length(length))
    } else {
        (None, Framing::Chunked)
    }
}

/// Appends `data` to `out`, or writes both when that would gather too much; whether
/// anything was written.
async fn gather(stream: &mut TcpStream, out: &mut Vec<u8>, data: &[u8]) -> io::Result<bool> {
    if out.len() + data.len() <= MAX_GATHERED {
        out.extend_from_slice(data);
        return Ok(false);
    }
    flush(stream, out).await?;
    stream.write_all(data).await?;
    Ok(true)
}

async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}
