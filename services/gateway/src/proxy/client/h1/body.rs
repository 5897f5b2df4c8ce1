//! Response bodies: read from their connection (by length, chunks or the close), which
//! goes back to its pool once a body is complete.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::super::pool::Checkin;
use super::request::Upload;
use super::{Connection, MAX_GATHERED, MAX_HEAD, invalid};

/// Most trailer lines after a chunked response body (hyper's limit too).
const MAX_TRAILERS: usize = 100;
/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// The state of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(Chunk),
    /// Everything until the upstream closes the connection.
    UntilClose,
    /// Read to its end.
    Done,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes still to come.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailers until an empty line.
    Trailers,
}

/// A response body read from its connection, which goes back to its pool once the
/// body is complete (unless the exchange said not to reuse it). Dropped before its
/// end, it closes the connection.
pub(crate) struct ResponseBody {
    /// `None` once the body is complete.
    pub(super) conn: Option<Box<Connection>>,
    /// Where the connection goes after the body; `None` when it is not to be reused.
    pub(super) home: Option<Checkin>,
    pub(super) framing: Framing,
    /// The rest of a request body the upstream answered before it had all of it
    /// (boxed: rare, and the body is moved about per response).
    pub(super) upload: Option<Box<Upload>>,
}

impl ResponseBody {
    /// The body is complete: the connection goes home if it may and has nothing unread
    /// (bytes beyond the answer mean the upstream does not speak HTTP/1.1 properly).
    pub(super) fn finish(&mut self) {
        self.framing = Framing::Done;
        self.upload = None;
        if let (Some(mut conn), Some(home)) = (self.conn.take(), self.home.take())
            && conn.read.is_empty()
        {
            // A large request body left a large buffer: idle connections keep little.
            if conn.write.capacity() > 2 * MAX_GATHERED {
                conn.write = Vec::new();
            }
            home.release(conn);
        }
    }

    /// The body cannot go on: the connection is closed.
    fn fail(&mut self, error: io::Error) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.home = None;
        self.conn = None;
        self.upload = None;
        self.framing = Framing::Done;
        Poll::Ready(Some(Err(error)))
    }

    /// Takes up to `remaining` bytes of data, reading when none is buffered.
    fn poll_data(
        conn: &mut Connection,
        remaining: u64,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Bytes>> {
        if conn.read.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream closed the connection in the middle of the body",
            )));
        }
        let take = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(conn.read.len());
        Poll::Ready(Ok(conn.read.split_to(take).freeze()))
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        // An upload still going on moves on whenever the body is polled; if the
        // upstream stops reading it, its answer may still complete.
        if let (Some(upload), Some(conn)) = (this.upload.as_mut(), this.conn.as_mut())
            && !matches!(conn.poll_send(upload, cx), Poll::Pending)
        {
            this.upload = None;
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(remaining) => {
                    let data = match ready!(Self::poll_data(conn, remaining, cx)) {
                        Ok(data) => data,
                        Err(error) => return this.fail(error),
                    };
                    let remaining = remaining - data.len() as u64;
                    this.framing = Framing::Length(remaining);
                    if remaining == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::UntilClose => {
                    if conn.read.is_empty() {
                        match ready!(conn.poll_fill(cx)) {
                            Ok(0) => {
                                this.home = None;
                                this.finish();
                                return Poll::Ready(None);
                            }
                            Ok(_) => {}
                            Err(error) => return this.fail(error),
                        }
                    }
                    return Poll::Ready(Some(Ok(Frame::data(conn.read.split().freeze()))));
                }
                Framing::Chunked(chunk) => match ready!(poll_chunked(conn, chunk, cx)) {
                    Ok(ChunkStep::Next(next)) => this.framing = Framing::Chunked(next),
                    Ok(ChunkStep::Data(data, next)) => {
                        this.framing = Framing::Chunked(next);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(ChunkStep::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Err(error) => return this.fail(error),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(remaining) => SizeHint::with_exact(remaining),
            Framing::Done => SizeHint::with_exact(0),
            Framing::Chunked(_) | Framing::UntilClose => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

/// Reads more of a body whose next part is incomplete; the end of the stream there is
/// an error.
pub(super) fn poll_more(conn: &mut Connection, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    match ready!(conn.poll_fill(cx)) {
        Ok(0) => Poll::Ready(Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the upstream closed the connection in the middle of the body",
        ))),
        Ok(_) => Poll::Ready(Ok(())),
        Err(error) => Poll::Ready(Err(error)),
    }
}

/// What one step of a chunked body gave.
pub(super) enum ChunkStep {
    /// Framing read; go on from the next state.
    Next(Chunk),
    /// Data, then the next state.
    Data(Bytes, Chunk),
    /// The last chunk and the trailers were read (the trailers are dropped).
    End,
}

/// One step of decoding a chunked body from `chunk`, reading when what it needs is not
/// buffered yet.
pub(super) fn poll_chunked(
    conn: &mut Connection,
    chunk: Chunk,
    cx: &mut Context<'_>,
) -> Poll<io::Result<ChunkStep>> {
    loop {
        match chunk {
            // A size line must start with a digit: httparse reads an empty one as 0,
            // the last chunk, which would end the body early.
            Chunk::Size if conn.read.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
                return Poll::Ready(Err(invalid("invalid chunk size in the response")));
            }
            Chunk::Size => match httparse::parse_chunk_size(&conn.read) {
                Ok(httparse::Status::Complete((used, size))) => {
                    conn.read.advance(used);
                    let next = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                    return Poll::Ready(Ok(ChunkStep::Next(next)));
                }
                Ok(httparse::Status::Partial) if conn.read.len() > MAX_CHUNK_LINE => {
                    return Poll::Ready(Err(invalid(
                        "a chunk-size line in the response is too long",
                    )));
                }
                Ok(httparse::Status::Partial) => ready!(poll_more(conn, cx))?,
                Err(_) => return Poll::Ready(Err(invalid("invalid chunk size in the response"))),
            },
            Chunk::Data(remaining) => {
                let data = ready!(ResponseBody::poll_data(conn, remaining, cx))?;
                let remaining = remaining - data.len() as u64;
                let next = if remaining == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(remaining)
                };
                return Poll::Ready(Ok(ChunkStep::Data(data, next)));
            }
            Chunk::DataEnd if conn.read.len() < 2 => ready!(poll_more(conn, cx))?,
            Chunk::DataEnd => {
                if &conn.read[..2] != b"\r\n" {
                    return Poll::Ready(Err(invalid(
                        "a chunk in the response does not end with CRLF",
                    )));
                }
                conn.read.advance(2);
                return Poll::Ready(Ok(ChunkStep::Next(Chunk::Size)));
            }
            Chunk::Trailers => {
                let mut trailers = [httparse::EMPTY_HEADER; MAX_TRAILERS];
                match httparse::parse_headers(&conn.read, &mut trailers) {
                    Ok(httparse::Status::Complete((used, _))) => {
                        conn.read.advance(used);
                        return Poll::Ready(Ok(ChunkStep::End));
                    }
                    Ok(httparse::Status::Partial) if conn.read.len() > MAX_HEAD => {
                        return Poll::Ready(Err(invalid("the response trailers are too large")));
                    }
                    Ok(httparse::Status::Partial) => ready!(poll_more(conn, cx))?,
                    Err(_) => return Poll::Ready(Err(invalid("invalid trailers in the response"))),
                }
            }
        }
    }
}
