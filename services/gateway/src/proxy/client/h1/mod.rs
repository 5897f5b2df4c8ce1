//! The data path's HTTP/1.1 client: one request at a time on a pooled connection,
//! written and read by the task of the request it carries.
//!
//! hyper's client connection is a task of its own that takes requests through a channel
//! and answers through a oneshot, and it consumes the request, so the gateway copied the
//! request headers for a possible retry and inserted `Host` into them before each attempt.
//! That machinery cost more instructions per proxied request than everything the gateway
//! itself does (bench/README.md, gateway, session 6). Here the request head is encoded
//! from the borrowed request parts straight into the connection's write buffer, the
//! response head is parsed with `httparse` (hyper's parser) and kept as the lines
//! received, sharing the read buffer: no map is built for it (its lines go back beside
//! the response, [`RelayedHeaders`], and are written to the client as they are), and the
//! response body reads the connection itself and returns it to the pool once it is
//! complete.
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

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Instant;

use axum::body::Body;
use bytes::BytesMut;
use http::HeaderMap;
use http::{Method, Response, StatusCode, Uri};
use hyper::body::Body as HttpBody;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

mod body;
mod head;
mod request;

pub(crate) use body::ResponseBody;

use body::Framing;
use head::{ResponseHead, parse_head, response_framing};
use request::{RequestFraming, Upload, encode_head};

use super::pool::Checkin;
use super::target::Target;
use crate::proxy::headers::Forwarding;
use crate::proxy::relayed::RelayedHeaders;

/// Largest response head (status line and headers, or trailers) accepted.
const MAX_HEAD: usize = 64 * 1024;
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
    /// The first-byte timer, made by the connection's first exchange and moved on by
    /// each later one: a deadline later than the one registered only updates it, where
    /// a timer per exchange was registered in Tokio's wheel and removed from it again
    /// (~600 instructions a request, bench/README.md, gateway, session 9). When it fires
    /// at a deadline that was moved on, the runtime registers it anew without waking
    /// anyone; an idle connection's fires once, waking the last task that waited on it.
    first_byte: Option<Pin<Box<Sleep>>>,
}

/// The answer's head did not come before the first-byte deadline.
#[derive(Debug, thiserror::Error)]
#[error("no answer head before the first-byte timeout")]
pub(crate) struct FirstByteTimeout;

impl FirstByteTimeout {
    /// Whether `error` is this one.
    pub(crate) fn is(error: &io::Error) -> bool {
        matches!(error.get_ref(), Some(inner) if inner.is::<FirstByteTimeout>())
    }
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
            first_byte: None,
        }
    }

    /// Sets the connection's first-byte timer to fire at `give_up`.
    fn arm_first_byte(&mut self, give_up: Instant) {
        let give_up = tokio::time::Instant::from_std(give_up);
        match &mut self.first_byte {
            Some(timer) => timer.as_mut().reset(give_up),
            None => self.first_byte = Some(Box::pin(tokio::time::sleep_until(give_up))),
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

    /// Sends a request and reads the head of its answer, failing with
    /// [`FirstByteTimeout`] if the head has not come by `give_up`. The returned
    /// response's body owns the connection and hands it to `home` once it was read to
    /// its end.
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
        give_up: Instant,
    ) -> Result<(Response<ResponseBody>, Option<RelayedHeaders>), Failed> {
        let framing = RequestFraming::of(head.method, &body);
        // Armed (or moved on) before the request goes out, polled only while waiting.
        self.arm_first_byte(give_up);
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
            let polled = self.poll_head(cx).map_ok(|answer| (answer, uploaded));
            if polled.is_pending()
                && let Some(timer) = self.first_byte.as_mut()
                && timer.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    FirstByteTimeout,
                )));
            }
            polled
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
            headers,
            seen,
        } = answer;
        let (framing, keep_alive, drop_length) =
            response_framing(head.method, status, version, &headers, seen).map_err(|error| {
                Failed {
                    error,
                    unanswered: false,
                }
            })?;
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
        // The head goes on as received unless its `Connection` names headers to remove,
        // which the relay then strips from a map.
        let relayed = match RelayedHeaders::new(headers, drop_length, seen.connection) {
            Ok(relayed) => Some(relayed),
            Err(headers) => {
                headers.append_to(response.headers_mut(), |name, _| {
                    !(drop_length && name.eq_ignore_ascii_case(b"content-length"))
                });
                None
            }
        };
        Ok((response, relayed))
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

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
