//! The per-thread pool of idle HTTP/1.1 upstream connections: most recently used
//! first, bounded per endpoint, expired after the idle timeout.
//!
//! A connection is driven by the request that uses it rather than by a task of its own:
//! the attempt polls hyper's `Connection` until the response head arrives, the response
//! body polls it until the body ends, and the pool polls it once at check-in and at
//! checkout (which notices a connection the upstream closed while it was idle). A
//! spawned connection task per upstream connection cost a task wake-up, a poll and a
//! cross-task channel hand-over per request (bench/README.md, gateway, session 5).
//! Connections that carried an upgrade request are driven by a spawned task, as hyper's
//! upgrades need ([`Lent::spawn_driver`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::{Body as _, Frame, Incoming};
use hyper::client::conn::{TrySendError, http1};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::connect::Connector;
use super::{Target, UpstreamClient};

/// How often (at most) a thread's idle connections are all polled at check-in, so that
/// connections the upstream closed are released without waiting for their next
/// checkout.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    /// This thread's pools, by client id. A thread serves one client (one gateway) and a
    /// handful of endpoints, so the pools are short lists searched in order, cheaper
    /// than hashing an id and an authority twice per request.
    pub(super) static POOLS: RefCell<Vec<(u64, ThreadPools)>> = const { RefCell::new(Vec::new()) };
}

/// The pools of client `id` in `pools`, created when missing.
pub(super) fn pools_of(pools: &mut Vec<(u64, ThreadPools)>, id: u64) -> &mut ThreadPools {
    let index = pools
        .iter()
        .position(|(client, _)| *client == id)
        .unwrap_or_else(|| {
            pools.push((id, ThreadPools::default()));
            pools.len() - 1
        });
    &mut pools[index].1
}

/// One client's pools on one thread.
#[derive(Default)]
pub(super) struct ThreadPools {
    /// Idle HTTP/1.1 connections by endpoint authority, oldest first.
    http1: Vec<(Authority, VecDeque<Idle>)>,
    /// The h2c client (hyper-util's, which multiplexes requests over one connection per
    /// endpoint).
    pub(super) h2c: Option<Client<Connector, Body>>,
    /// When the idle connections were last all polled.
    swept: Option<Instant>,
}

/// An idle HTTP/1.1 connection.
struct Idle {
    lent: Lent,
    since: Instant,
}

/// hyper's half of an HTTP/1.1 client connection, the one that does the I/O.
pub(super) type Http1Connection = http1::Connection<TokioIo<TcpStream>, Body>;

/// Who polls a connection's I/O half.
enum Driver {
    /// Whoever holds the [`Lent`]: the attempt, then the response body, then the pool.
    /// Boxed, so that lending the connection around moves a pointer.
    Inline(Pin<Box<Http1Connection>>),
    /// A spawned task (the connection carried an upgrade request).
    Task,
    /// The connection has ended (closed, failed or upgraded away).
    Ended,
}

/// A context whose waker does nothing: for polling what only a connection polled just
/// before (with the real waker) can move, and for polling idle connections.
fn noop_context() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// The waker an inline connection is polled with: it forwards to the waker of the task
/// polling the connection at the moment, and can be silenced while the response body
/// is read. Reading a body chunk wakes the connection (there is room for the next
/// one); the body's reader polls the connection itself whenever the body has nothing
/// ready, so that wake-up would only poll the whole client connection's task once more
/// for nothing.
#[derive(Default)]
struct Gate {
    task: AtomicWaker,
    /// Set by a wake-up that found no task registered.
    missed: AtomicBool,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self.task.take() {
            Some(task) => task.wake(),
            None => self.missed.store(true, Ordering::Release),
        }
    }
}

/// One HTTP/1.1 connection: the request sender and, unless a task drives it, the
/// connection's I/O half.
pub(super) struct Lent {
    sender: http1::SendRequest<Body>,
    driver: Driver,
    gate: Arc<Gate>,
    /// `gate` as a waker, made once per connection.
    gate_waker: Waker,
}

impl Lent {
    /// A fresh connection, driven inline.
    pub(super) fn new(sender: http1::SendRequest<Body>, connection: Http1Connection) -> Self {
        let gate = Arc::new(Gate::default());
        Self {
            sender,
            driver: Driver::Inline(Box::pin(connection)),
            gate_waker: Waker::from(Arc::clone(&gate)),
            gate,
        }
    }

    /// Polls the I/O half once on behalf of `cx`'s task, when held inline; returns
    /// whether it is still driven inline (false once it ended or when a task drives
    /// it).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Driver::Inline(connection) = &mut self.driver else {
            return false;
        };
        // This poll handles whatever a missed wake-up announced.
        self.gate.missed.store(false, Ordering::Relaxed);
        self.gate.task.register(cx.waker());
        match connection
            .as_mut()
            .poll(&mut Context::from_waker(&self.gate_waker))
        {
            Poll::Pending => true,
            Poll::Ready(ended) => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "upstream connection ended with an error");
                }
                self.driver = Driver::Ended;
                false
            }
        }
    }

    /// Polls `body` (this connection's response body) while the gate is silent: the body
    /// only holds what the connection delivered when it was last polled.
    fn poll_body_quietly(&self, body: &mut Incoming) -> Poll<Option<hyper::Result<Frame<Bytes>>>> {
        drop(self.gate.task.take());
        Pin::new(body).poll_frame(&mut noop_context())
    }

    /// Whether the connection is usable at all (not closed, not ended).
    fn is_open(&mut self) -> bool {
        match self.driver {
            Driver::Inline(_) => self.drive(&mut noop_context()),
            Driver::Task => !self.sender.is_closed(),
            Driver::Ended => false,
        }
    }

    /// Whether the connection takes a request right now.
    pub(super) fn is_ready(&self) -> bool {
        self.sender.is_ready()
    }

    /// Waits until the connection takes a request; false when it closed instead.
    pub(super) async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            if matches!(self.driver, Driver::Task) {
                return self.sender.poll_ready(cx).map(|ready| ready.is_ok());
            }
            if !self.drive(cx) {
                return Poll::Ready(false);
            }
            // Only the connection polled just above changes the sender's readiness.
            self.sender
                .poll_ready(&mut noop_context())
                .map(|ready| ready.is_ok())
        })
        .await
    }

    /// Hands the I/O half to a spawned task, which hyper's upgrades need (the upgraded
    /// I/O leaves the connection when the task sees the `101`).
    pub(super) fn spawn_driver(&mut self) {
        if let Driver::Inline(connection) = std::mem::replace(&mut self.driver, Driver::Task) {
            tokio::spawn(async move {
                if let Err(error) = Pin::into_inner(connection).with_upgrades().await {
                    tracing::debug!(%error, "upstream connection ended with an error");
                }
            });
        }
    }

    /// Sends `request` and drives the connection until the response head arrived. An
    /// error carrying the request back means it was never sent.
    pub(super) async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Body>>> {
        let mut response = pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            if self.drive(cx) {
                // The response is completed by the connection polled just above, never
                // by anything else: its own waker would only wake this task once more.
                response.as_mut().poll(&mut noop_context())
            } else {
                response.as_mut().poll(cx)
            }
        })
        .await
    }
}

impl UpstreamClient {
    /// The most recently used idle connection to `authority` on this thread (its socket
    /// and buffers are the warmest), dropping closed and expired ones on the way.
    /// `now` is the time of the attempt.
    pub(super) fn checkout(&self, authority: &Authority, now: Instant) -> Option<Lent> {
        let idle_timeout = self.settings.pool_idle_timeout;
        POOLS
            .try_with(|pools| {
                let mut pools = pools.borrow_mut();
                let (_, pools) = pools.iter_mut().find(|(client, _)| *client == self.id)?;
                let (_, idle) = pools.http1.iter_mut().find(|(a, _)| a == authority)?;
                while let Some(mut entry) = idle.pop_back() {
                    if now.saturating_duration_since(entry.since) < idle_timeout
                        && entry.lent.is_open()
                    {
                        return Some(entry.lent);
                    }
                }
                None
            })
            .ok()
            .flatten()
    }

    pub(super) fn checkin(&self, target: &Target, lent: Lent) -> Checkin {
        Checkin {
            client: self.id,
            authority: target.authority.clone(),
            max_idle: self.settings.max_idle_per_endpoint,
            idle_timeout: self.settings.pool_idle_timeout,
            lent,
        }
    }
}

/// A pooled HTTP/1.1 connection lent to one exchange. [`Checkin::release`] returns it to
/// the pool of the thread that calls it; dropping it instead closes the connection
/// (its response was not read to the end, or it was upgraded).
pub(crate) struct Checkin {
    client: u64,
    authority: Authority,
    max_idle: usize,
    idle_timeout: Duration,
    lent: Lent,
}

impl Checkin {
    /// Polls the response body `body` of this connection. An inline connection is
    /// polled here only when the body has nothing ready, and the body itself with no
    /// waker: only the connection moves it (see [`Gate`]).
    pub(crate) fn poll_body(
        &mut self,
        body: &mut Incoming,
        cx: &mut Context<'_>,
    ) -> Poll<Option<hyper::Result<Frame<Bytes>>>> {
        let lent = &mut self.lent;
        if !matches!(lent.driver, Driver::Inline(_)) {
            return Pin::new(body).poll_frame(cx);
        }
        let polled = lent.poll_body_quietly(body);
        if polled.is_ready() {
            return polled;
        }
        if !lent.drive(cx) {
            return Pin::new(body).poll_frame(cx);
        }
        let polled = lent.poll_body_quietly(body);
        if polled.is_pending() {
            // Waiting for the connection: its wake-ups reach this task again.
            lent.gate.task.register(cx.waker());
            if lent.gate.missed.swap(false, Ordering::AcqRel) {
                cx.waker().wake_by_ref();
            }
        }
        polled
    }

    pub(crate) fn release(self) {
        // Not polled here: the checkout polls it (and notices a close) anyway.
        let open = match self.lent.driver {
            Driver::Inline(_) => true,
            Driver::Task => !self.lent.sender.is_closed(),
            Driver::Ended => false,
        };
        if self.max_idle == 0 || !open {
            return;
        }
        let Self {
            client,
            authority,
            max_idle,
            idle_timeout,
            lent,
        } = self;
        let _ = POOLS.try_with(|pools| {
            let mut pools = pools.borrow_mut();
            let pools = pools_of(&mut pools, client);
            let now = Instant::now();
            if pools
                .swept
                .is_none_or(|swept| now.duration_since(swept) >= SWEEP_EVERY)
            {
                pools.swept = Some(now);
                for (_, idle) in &mut pools.http1 {
                    idle.retain_mut(|entry| {
                        now.duration_since(entry.since) < idle_timeout && entry.lent.is_open()
                    });
                }
            }
            let http1 = &mut pools.http1;
            let index = http1
                .iter()
                .position(|(a, _)| *a == authority)
                .unwrap_or_else(|| {
                    http1.push((authority, VecDeque::new()));
                    http1.len() - 1
                });
            let idle = &mut http1[index].1;
            // The oldest connections are at the front: expired ones and those beyond
            // the bound go first.
            while idle.front().is_some_and(|e| {
                now.duration_since(e.since) >= idle_timeout || idle.len() >= max_idle
            }) {
                idle.pop_front();
            }
            idle.push_back(Idle { lent, since: now });
        });
    }
}

impl fmt::Debug for Checkin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkin")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}
