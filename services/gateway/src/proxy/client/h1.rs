//! The data path's HTTP/1.1 client: one request at a time on a pooled connection,
//! written and read by the task of the request it carries.
//!
//! hyper's client connection is a task of its own that takes requests through a channel
//! and answers through a oneshot, and it consumes the request, so the gateway copied the
//! request headers for a possible retry and inserted `Host` into them before each attempt.
//! That machinery cost more instructions per proxied request than everything the gateway
//! itself does (bench/README.md, gateway, session 6). Here the request head is encoded
//! from the borrowed request parts straight into the connection's write buffer, the
//! response head is parsed with `httparse` (hyper's parser) into a `HeaderMap` whose
//! values share the read buffer, and the response body reads the connection itself and
//! returns it to the pool once it is complete.
//!
//! What it speaks: requests with an empty, sized or streamed (`chunked`) body, request
//! trailers dropped; responses framed by `Content-Length`, `chunked` (trailers read and
//! dropped) or the end of the connection (RFC 9112 §6.3); `1xx` interim answers skipped.
//! An answer that arrives while the request body is still being sent does not stop the
//! upload (a streaming upstream reads on), unless it closes the connection. A connection
//! is reused only after a complete exchange with nothing left over: not after an early
//! answer, an HTTP/1.0 or `Connection: close` answer, one delimited by the close or
//! framed both by a length and `chunked`, nor with bytes beyond the answer (they would
//! be read as the next request's answer). Upgrades (WebSocket) and h2c stay with hyper
//! (`connect.rs`).

use std::future::poll_fn;
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Uri, Version};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use super::pool::Checkin;
use super::target::Target;
use crate::proxy::headers::{Forwarding, connection_has};

/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in a response head (hyper's default too).
const MAX_HEADERS: usize = 100;
/// Most trailer lines after a chunked response body (hyper's limit too).
const MAX_TRAILERS: usize = 100;
/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Read buffer room made before a read when less than half of it is left.
const READ_RESERVE: usize = 8 * 1024;
/// Request body bytes gathered before they are written.
const MAX_GATHERED: usize = 64 * 1024;

/// An HTTP/1.1 connection to one endpoint, with its buffers. Kept boxed: it moves from
/// the pool to the exchange to the response body and back as a pointer rather than as
/// its buffers' bookkeeping.
pub(crate) struct Connection {
    io: TcpStream,
    /// Bytes read and not yet consumed; response heads and bodies are split off it
    /// without copying.
    read: BytesMut,
    /// The request being sent: its head and the body bytes gathered with it.
    write: Vec<u8>,
    /// Where a parsed head's names and values lie in `read` (kept for its capacity:
    /// an array on the stack would be zeroed for every response).
    spans: Vec<[usize; 4]>,
    /// Whether any byte of an answer to the current request arrived.
    answered: bool,
}

/// The parts of a request the client sends besides its body, borrowed from the request
/// being forwarded (a retry sends them again).
#[derive(Clone, Copy)]
pub(crate) struct RequestHead<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    /// Written after `headers`, whose values for the same names are left out.
    pub(crate) forwarding: &'a Forwarding,
}

impl Connection {
    pub(crate) fn new(io: TcpStream) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            spans: Vec::new(),
            answered: false,
        }
    }

    /// Whether an idle connection can take a request: nothing arrived while it was idle
    /// (an end of stream means the upstream closed it, bytes nobody asked for that it
    /// broke the protocol). Costs no system call unless the socket became readable.
    pub(crate) fn is_usable(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Sends a request and reads the head of its answer. The returned response's body
    /// owns the connection and hands it to `home` once it was read to its end.
    ///
    /// An answer may come before the whole request body was sent: a streaming upstream
    /// answers while it reads, a refusing one before. The upload then goes on beside
    /// the response body (unless the answer closes the connection), and the connection
    /// is not reused. An answer already received is also the answer when a write fails
    /// (an upstream that refused and closed without reading resets the upload).
    pub(crate) async fn send(
        mut self: Box<Self>,
        target: &Target,
        head: RequestHead<'_>,
        body: Body,
        home: Checkin,
    ) -> Result<Response<ResponseBody>, Failed> {
        let framing = RequestFraming::of(head.method, &body);
        self.answered = false;
        self.write.clear();
        encode_head(&mut self.write, target, &head, framing);
        let mut upload = Some(Upload {
            body: (framing != RequestFraming::Empty).then_some(body),
            framing,
            sent: 0,
            written: 0,
        });
        let answer = poll_fn(|cx| {
            if let Some(sending) = upload.as_mut() {
                match self.poll_send(sending, cx) {
                    Poll::Ready(Ok(())) => upload = None,
                    Poll::Ready(Err(error)) => {
                        upload = None;
                        return match self.poll_head(cx) {
                            Poll::Ready(Ok(answer)) => Poll::Ready(Ok((answer, false))),
                            Poll::Ready(Err(_)) | Poll::Pending => Poll::Ready(Err(error)),
                        };
                    }
                    Poll::Pending => {}
                }
            }
            let uploaded = upload.is_none();
            self.poll_head(cx).map_ok(|answer| (answer, uploaded))
        });
        let (answer, uploaded) = match answer.await {
            Ok(answered) => answered,
            Err(error) => {
                return Err(Failed {
                    error,
                    unanswered: !self.answered,
                });
            }
        };
        let ResponseHead {
            status,
            version,
            mut headers,
            seen,
        } = answer;
        let (framing, keep_alive) =
            response_framing(head.method, status, version, &mut headers, seen).map_err(
                |error| Failed {
                    error,
                    unanswered: false,
                },
            )?;
        let mut body = ResponseBody {
            conn: Some(self),
            home: (keep_alive && uploaded).then_some(home),
            framing,
            // RFC 9112 §9.6: a body the upstream closes the connection over is not sent.
            upload: upload.filter(|_| keep_alive).map(Box::new),
        };
        if body.framing == Framing::Length(0) {
            body.finish();
        }
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        Ok(response)
    }

    /// Writes the request head and body; ready once all of it is written. Body frames
    /// ready at once join the bytes waiting to be written, so a small request goes out
    /// in one `write`.
    fn poll_send(&mut self, upload: &mut Upload, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            // Whether the body has nothing ready (its waker is registered).
            let mut body_waits = false;
            while self.write.len() < MAX_GATHERED
                && let Some(body) = upload.body.as_mut()
            {
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            upload.encode_data(&mut self.write, &data)?;
                        }
                    }
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(io::Error::other(error)));
                    }
                    Poll::Ready(None) => {
                        upload.encode_end(&mut self.write)?;
                        upload.body = None;
                    }
                    Poll::Pending => {
                        body_waits = true;
                        break;
                    }
                }
            }
            if upload.written == self.write.len() {
                self.write.clear();
                upload.written = 0;
                if upload.body.is_none() {
                    return Poll::Ready(Ok(()));
                }
                if body_waits {
                    return Poll::Pending;
                }
                // The buffer was full: gather more of the body.
                continue;
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.write[upload.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => upload.written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads until a final response head is complete; interim (`1xx`) heads other than
    /// `101` are skipped.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<ResponseHead>> {
        loop {
            if !self.read.is_empty() {
                if let Some(head) = parse_head(&mut self.read, &mut self.spans)? {
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    return Poll::Ready(Ok(head));
                }
                if self.read.len() >= MAX_HEAD {
                    return Poll::Ready(Err(invalid("the response head is too large")));
                }
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection before answering",
                )));
            }
            self.answered = true;
        }
    }

    /// Reads what the socket has into the read buffer; 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_RESERVE / 2 {
            self.read.reserve(READ_RESERVE);
        }
        poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: io::Error,
    /// Not a byte of an answer came back: on a connection taken from the pool, the
    /// upstream may have closed it as the request went out.
    pub(crate) unanswered: bool,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestFraming {
    /// No body and no length (GET, HEAD, DELETE... without a body).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (a streamed body of unknown length).
    Chunked,
}

impl RequestFraming {
    fn of(method: &Method, body: &Body) -> Self {
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
struct Upload {
    /// `None` once its end was encoded.
    body: Option<Body>,
    framing: RequestFraming,
    /// Body bytes encoded so far.
    sent: u64,
    /// Bytes of the write buffer already written.
    written: usize,
}

impl Upload {
    fn encode_data(&mut self, buf: &mut Vec<u8>, data: &Bytes) -> io::Result<()> {
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

    fn encode_end(&self, buf: &mut Vec<u8>) -> io::Result<()> {
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
fn encode_head(
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
    for (name, value) in sent.chain(head.forwarding.iter()) {
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
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

/// A parsed response head.
struct ResponseHead {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    seen: Seen,
}

/// Which framing headers a response head has, noted while it is parsed so that the
/// framing looks up only those present.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    connection: bool,
    transfer_encoding: bool,
    content_length: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName) {
        self.connection |= name == header::CONNECTION;
        self.transfer_encoding |= name == header::TRANSFER_ENCODING;
        self.content_length |= name == header::CONTENT_LENGTH;
    }
}

/// Parses a response head at the start of `buf` and splits it off; `None` while it is
/// incomplete. Header values share the head's bytes instead of being copied; `spans`
/// is room to note where they lie.
fn parse_head(buf: &mut BytesMut, spans: &mut Vec<[usize; 4]>) -> io::Result<Option<ResponseHead>> {
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
    let start = buf.as_ptr() as usize;
    spans.clear();
    spans.extend(response.headers.iter().map(|line| {
        let name = line.name.as_ptr() as usize - start;
        let value = line.value.as_ptr() as usize - start;
        [
            name,
            name + line.name.len(),
            value,
            value + line.value.len(),
        ]
    }));
    let head = buf.split_to(length).freeze();
    // Room for what the gateway adds to the response (`X-Request-Id`, rate-limit and
    // CORS headers) without growing the map.
    let mut headers = HeaderMap::with_capacity(spans.len() + 4);
    let mut seen = Seen::default();
    for &[name_start, name_end, value_start, value_end] in spans.iter() {
        let name = HeaderName::from_bytes(&head[name_start..name_end])
            .map_err(|_| invalid("invalid response header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_start..value_end))
            .map_err(|_| invalid("invalid response header value"))?;
        seen.note(&name);
        headers.append(name, value);
    }
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
fn response_framing(
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
    if seen.transfer_encoding
        && let Some(codings) = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
    {
        // RFC 9112 §6.1: an HTTP/1.0 message framed by a coding is faulty.
        if version == Version::HTTP_10 {
            return Err(invalid("Transfer-Encoding in an HTTP/1.0 response"));
        }
        let chunked = codings
            .to_str()
            .ok()
            .and_then(|codings| codings.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        // RFC 9112 §6.3: a length beside the coding is removed before forwarding, and
        // such a message (a smuggling attempt, or a broken server) does not get to
        // frame another one on this connection.
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
    let mut length = None;
    let lengths = seen
        .content_length
        .then(|| headers.get_all(header::CONTENT_LENGTH));
    for value in lengths.iter().flatten() {
        for part in value.to_str().unwrap_or("x").split(',') {
            let part = part.trim();
            let parsed = part
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| invalid("invalid Content-Length in the response"))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(invalid("conflicting Content-Length values in the response"));
            }
            length = Some(parsed);
        }
    }
    Ok(match length {
        Some(length) => (Framing::Length(length), keep_alive),
        None => (Framing::UntilClose, false),
    })
}

/// The state of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
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
enum Chunk {
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
    conn: Option<Box<Connection>>,
    /// Where the connection goes after the body; `None` when it is not to be reused.
    home: Option<Checkin>,
    framing: Framing,
    /// The rest of a request body the upstream answered before it had all of it
    /// (boxed: rare, and the body is moved about per response).
    upload: Option<Box<Upload>>,
}

impl ResponseBody {
    /// The body is complete: the connection goes home if it may and has nothing unread
    /// (bytes beyond the answer mean the upstream does not speak HTTP/1.1 properly).
    fn finish(&mut self) {
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
fn poll_more(conn: &mut Connection, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
enum ChunkStep {
    /// Framing read; go on from the next state.
    Next(Chunk),
    /// Data, then the next state.
    Data(Bytes, Chunk),
    /// The last chunk and the trailers were read (the trailers are dropped).
    End,
}

/// One step of decoding a chunked body from `chunk`, reading when what it needs is not
/// buffered yet.
fn poll_chunked(
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

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
