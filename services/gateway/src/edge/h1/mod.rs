//! The data path's HTTP/1.1 server side: one loop per client connection that reads a
//! request head, its body when the body is small, serves the request with [`Edge`] and
//! writes the answer, on the connection's own task.
//!
//! Why not hyper's server for everything: its connection state machine, dispatcher,
//! request and response encoding were ~7.5k of the ~25k instructions the gateway spent
//! per proxied request (bench/README.md, gateway, session 7), more than routing,
//! authentication, throttling and logging together. This loop does only what a typical
//! API request needs, and hands everything else to hyper for the rest of the
//! connection, with the bytes it has read put back in front:
//!
//! - served here: HTTP/1.1 requests without a body or with a `Content-Length` body of at
//!   most [`MAX_BUFFERED_BODY`] (read whole before the request is served, as a reverse
//!   proxy buffers request bodies), keep-alive and pipelining (answers in order);
//! - refused here, then the connection closes: an invalid head (`400`), a head longer
//!   than the limit or with more than 100 header lines (`431`), `Content-Length` beside
//!   `Transfer-Encoding` or lengths that disagree (`400`, RFC 9112 §6.3 — hyper would
//!   silently drop the length), a head or body not sent whole within the request
//!   timeout of its first byte (`408`; hyper ran without a timer, so a trickled head
//!   was waited for forever);
//! - handed to hyper: HTTP/1.0, `Transfer-Encoding` (streamed bodies), larger bodies,
//!   `Expect: 100-continue`, upgrades (WebSocket), `CONNECT`, and the HTTP/2 preface
//!   (h2c with prior knowledge).
//!
//! A client that closes its connection while its request is in flight, or while a
//! streamed answer waits for its next bytes, cancels the request (as with hyper). The
//! watch ends once bytes of a pipelined request arrive (they are kept for the next
//! head), so a client that pipelines and closes only its sending side still gets its
//! answers. On shutdown a connection without a whole head closes at once and a busy one
//! after its answer, which then carries `Connection: close`; one handed to hyper gets
//! hyper's graceful shutdown. A connection idle between requests for
//! `--client-idle-timeout-secs` is closed (hyper, which served this side before, had no
//! such timeout configured); its timer is armed once per connection and moved on only
//! when it fires, not per request.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use service_kit::{CancellationToken, HttpSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

mod answer_head;
mod handoff;
mod request;
mod response;

use handoff::hand_off;
use request::{Head, Refusal};
use response::Written;

use super::Answer;
use super::direct::Edge;
use crate::proxy::RequestId;

/// Largest request body read whole before its request is served; longer ones stream
/// through hyper.
pub(crate) const MAX_BUFFERED_BODY: usize = 64 * 1024;
/// Read buffer room made before a read when less than half of it is left.
const READ_RESERVE: usize = 8 * 1024;
/// Most room a connection's read or write buffer keeps between requests.
const KEPT_BUFFER: usize = 16 * 1024;
/// How long a refused or closing connection is read (and the bytes dropped) after the
/// answer, so that unread request bytes do not make the kernel reset the connection
/// before the client has read the answer.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read while lingering.
const LINGER_BYTES: usize = 1024 * 1024;

/// The answer to a request whose upstream answer failed before any of it was sent to
/// the client (cut short, or longer than its length): the same 502 as an upstream that
/// could not be reached, instead of a connection closed without a byte (hyper's
/// connections get it from `edge::prefetch`).
const UPSTREAM_BROKE_OFF: Refusal = Refusal {
    status: http::StatusCode::BAD_GATEWAY,
    code: "upstream_unavailable",
    detail: "The service behind this route broke off its answer.",
};

/// hyper's server, for the connections handed to it.
pub(crate) type Fallback = Arc<AutoBuilder<TokioExecutor>>;

/// The limits a connection applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    max_head: usize,
    /// How long a request head or body may take to arrive once it has begun.
    request_timeout: Duration,
    /// How long a connection may wait for its next request.
    idle_timeout: Duration,
}

impl Limits {
    /// The limits of `settings`, and `idle_timeout` between requests.
    pub(crate) fn new(settings: &HttpSettings, idle_timeout: Duration) -> Self {
        Self {
            max_head: settings.max_header_bytes.max(8192),
            request_timeout: settings.request_timeout,
            idle_timeout,
        }
    }
}

/// hyper's server as the gateway configures it (for handed-off connections).
pub(crate) fn fallback(limits: Limits) -> Fallback {
    let mut builder = AutoBuilder::new(TokioExecutor::new());
    // Bounds the HTTP/1.1 request head; hyper answers 431 beyond it.
    builder
        .http1()
        .max_buf_size(limits.max_head)
        // Head and body copied into one buffer and sent with one `write`.
        .writev(false);
    Arc::new(builder)
}

/// Serves the client connection `stream` from `peer` until it closes, `shutdown`, or it
/// is handed to `fallback`.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    edge: Arc<Edge>,
    fallback: Fallback,
    shutdown: CancellationToken,
    limits: Limits,
) {
    // Registered once for the connection, not per request.
    let mut stopping = pin!(shutdown.cancelled());
    let mut client = Client {
        stream,
        buf: BytesMut::with_capacity(READ_RESERVE),
        out: Vec::with_capacity(1024),
        spans: Vec::new(),
        limits,
        active: Instant::now(),
        idle: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        idle_registered: false,
    };
    let mut first = true;
    loop {
        let Some(head) = client.next_head(first, stopping.as_mut()).await else {
            return;
        };
        first = false;
        let (parts, body_len, close) = match head {
            Head::Serve {
                parts,
                body_len,
                close,
            } => (parts, body_len, close),
            Head::HandOff { head } => {
                let mut read = BytesMut::with_capacity(head.len() + client.buf.len());
                read.extend_from_slice(&head);
                read.extend_from_slice(&client.buf);
                let stream = client.stream;
                return hand_off(stream, read.freeze(), peer, &edge, &fallback, &shutdown).await;
            }
            Head::Http2 => {
                let (stream, read) = (client.stream, client.buf.freeze());
                return hand_off(stream, read, peer, &edge, &fallback, &shutdown).await;
            }
            Head::Refuse(refusal) => return client.refuse(refusal).await,
            Head::Partial => unreachable!("next_head ends only with a whole head"),
        };
        let body = match client.body(body_len).await {
            Ok(body) => body,
            Err(Some(refusal)) => return client.refuse(refusal).await,
            Err(None) => return,
        };
        let head_request = parts.method == Method::HEAD;
        let request = Request::from_parts(parts, Full::new(body));
        // Pinned here and lent to the watch: the request's future is large, and every
        // move of it is a copy.
        let serving = pin!(Arc::clone(&edge).serve(request, peer));
        let answered = until_answered(&mut client.stream, &mut client.buf, serving).await;
        // `None`: the client went away; the request was dropped.
        let Some(answer) = answered else { return };
        let close = close || shutdown.is_cancelled();
        let Client {
            stream, buf, out, ..
        } = &mut client;
        match response::write(stream, buf, out, answer, head_request, close).await {
            Ok(Written::KeepOpen) if !shutdown.is_cancelled() => client.answered(),
            Ok(Written::BodyFailedUnsent(request_id)) => {
                tracing::warn!(
                    "the upstream's answer body failed before any of it was sent; answering 502"
                );
                client.out.clear();
                return client.refuse_with(UPSTREAM_BROKE_OFF, request_id).await;
            }
            Ok(_) => return linger(&mut client.stream).await,
            // Cut: the client sees an incomplete answer.
            Err(_) => return,
        }
    }
}

/// A client connection and its buffers.
struct Client {
    stream: TcpStream,
    /// Read and not served yet.
    buf: BytesMut,
    /// The answer being written.
    out: Vec<u8>,
    /// Room to note where header lines lie.
    spans: Vec<[usize; 4]>,
    limits: Limits,
    /// When the connection last finished an answer (or was accepted).
    active: Instant,
    /// The idle timer: armed once for the connection and moved on only when it fires
    /// (to `active` + the idle timeout), not re-armed for every request.
    idle: Pin<Box<Sleep>>,
    /// Whether `idle` was polled since it was set (so its wake-up reaches this task).
    idle_registered: bool,
}

/// How a wait between requests ended.
enum Idle {
    Read(io::Result<usize>),
    Stopping,
    TimedOut,
}

impl Client {
    /// Reads until `buf` starts with a whole head (the connection's `first` if so) and
    /// parses it. `None` when the connection ends, or `stopping` completes while no head
    /// is whole (a connection is idle until then, as hyper has it).
    async fn next_head(
        &mut self,
        first: bool,
        mut stopping: Pin<&mut impl Future<Output = ()>>,
    ) -> Option<Head> {
        let limits = self.limits;
        let mut deadline = None;
        loop {
            if !self.buf.is_empty() {
                let parsed = request::parse(
                    &mut self.buf,
                    first,
                    &mut self.spans,
                    limits.max_head,
                    MAX_BUFFERED_BODY,
                );
                match parsed {
                    Head::Partial if self.buf.len() >= limits.max_head => {
                        return Some(Head::Refuse(Refusal::TOO_LARGE));
                    }
                    Head::Partial => {}
                    head => return Some(head),
                }
            }
            let read = if self.buf.is_empty() {
                match self.idle_wait(stopping.as_mut()).await {
                    Idle::Read(read) => read,
                    Idle::Stopping => return None,
                    Idle::TimedOut => {
                        let until = self.active + limits.idle_timeout;
                        if Instant::now() >= until {
                            return None;
                        }
                        // Active since the timer was set: moved on, registered anew.
                        self.idle.as_mut().reset(until);
                        self.idle_registered = false;
                        continue;
                    }
                }
            } else {
                // A head begun and not finished gets the request timeout from its
                // first bytes (a client trickling a head does not hold the connection).
                let deadline =
                    *deadline.get_or_insert_with(|| Instant::now() + limits.request_timeout);
                let reading =
                    tokio::time::timeout_at(deadline, read_more(&mut self.stream, &mut self.buf));
                tokio::select! {
                    biased;
                    read = reading => match read {
                        Ok(read) => read,
                        Err(_) => return Some(Head::Refuse(Refusal::HEAD_TIMEOUT)),
                    },
                    () = stopping.as_mut() => return None,
                }
            };
            if !matches!(read, Ok(1..)) {
                return None;
            }
        }
    }

    /// Waits between requests for the next bytes, shutdown or the idle timer. The timer
    /// is polled only once after it is set: its wake-up comes to this task all the same,
    /// and a check of its state is cheaper than a poll per request.
    async fn idle_wait(&mut self, mut stopping: Pin<&mut impl Future<Output = ()>>) -> Idle {
        make_room(&mut self.buf);
        poll_fn(|cx: &mut Context<'_>| {
            if let Poll::Ready(read) = poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
            {
                return Poll::Ready(Idle::Read(read));
            }
            if stopping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Idle::Stopping);
            }
            if !self.idle_registered {
                self.idle_registered = true;
                if self.idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Idle::TimedOut);
                }
            } else if self.idle.is_elapsed() {
                return Poll::Ready(Idle::TimedOut);
            }
            Poll::Pending
        })
        .await
    }

    /// The `length` body bytes that follow the head, read whole within the request
    /// timeout. `Err(None)` when the connection ended first.
    async fn body(&mut self, length: usize) -> Result<Bytes, Option<Refusal>> {
        if length == 0 {
            return Ok(Bytes::new());
        }
        let reading = read_body(&mut self.stream, &mut self.buf, length);
        match tokio::time::timeout(self.limits.request_timeout, reading).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(_)) => Err(None),
            Err(_) => Err(Some(Refusal::BODY_TIMEOUT)),
        }
    }

    /// Answers `refusal` with a problem and closes the connection.
    async fn refuse(self, refusal: Refusal) {
        self.refuse_with(refusal, None).await;
    }

    /// [`Client::refuse`] for a request whose id is `request_id`.
    async fn refuse_with(mut self, refusal: Refusal, request_id: Option<RequestId>) {
        tracing::debug!(
            status = refusal.status.as_u16(),
            code = refusal.code,
            "request refused"
        );
        let problem = super::problem(refusal.status, refusal.code, refusal.detail);
        let answer = Answer {
            request_id,
            ..Answer::from(problem)
        };
        let Self {
            stream, buf, out, ..
        } = &mut self;
        if response::write(stream, buf, out, answer, false, true)
            .await
            .is_ok()
        {
            linger(stream).await;
        }
    }

    /// After an answer: the connection is active now, and a large body or answer does
    /// not leave its buffers' size to an idle connection.
    fn answered(&mut self) {
        self.active = Instant::now();
        if self.out.capacity() > KEPT_BUFFER {
            self.out = Vec::with_capacity(1024);
        }
        if self.buf.is_empty() && self.buf.capacity() > KEPT_BUFFER {
            self.buf = BytesMut::with_capacity(READ_RESERVE);
        }
    }
}

/// Reads more of the connection into `buf`; `Ok(0)` at its end.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    make_room(buf);
    stream.read_buf(buf).await
}

/// Room for a read, made only when less than half of [`READ_RESERVE`] is left: the
/// heads of requests in flight still hold the buffer's storage, so making room
/// allocates.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_RESERVE / 2 {
        buf.reserve(READ_RESERVE);
    }
}

/// The `length` body bytes that follow the head, read to their end.
async fn read_body(stream: &mut TcpStream, buf: &mut BytesMut, length: usize) -> io::Result<Bytes> {
    if buf.len() < length {
        buf.reserve(length - buf.len());
    }
    while buf.len() < length {
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf.split_to(length).freeze())
}

/// Runs `answer` while watching the client's side: `None` when the client closes the
/// connection (or it fails) first. Watched only while nothing of the client's is
/// buffered, as hyper does: the first bytes of a pipelined request end the watch (they
/// stay in `buf`), so a client that pipelines and then closes its sending side is still
/// answered, and a pipelining client cannot make the gateway buffer more than one read.
async fn until_answered<F: Future>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mut answer: Pin<&mut F>,
) -> Option<F::Output> {
    poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(answered) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(answered));
        }
        if buf.is_empty() {
            make_room(buf);
            if let Poll::Ready(Ok(0) | Err(_)) = poll_read_buf(Pin::new(&mut *stream), cx, buf) {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}

/// Ends the sending side, then reads what the client still sends for a while.
async fn linger(stream: &mut TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0_u8; 4096];
    let mut drained = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
