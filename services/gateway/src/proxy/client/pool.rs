//! The per-thread pool of idle HTTP/1.1 upstream connections: most recently used
//! first, bounded per endpoint, expired after the idle timeout.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::uri::Authority;
use hyper_util::client::legacy::Client;

use super::connect::Connector;
use super::h1::Connection;
use super::{Target, UpstreamClient};

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
}

/// An idle HTTP/1.1 connection.
struct Idle {
    conn: Box<Connection>,
    since: Instant,
}

impl UpstreamClient {
    /// The most recently used idle connection to `authority` on this thread (its socket
    /// and buffers are the warmest), dropping closed and expired ones on the way.
    /// `now` is the time of the attempt (no clock read of its own).
    pub(super) fn checkout(&self, authority: &Authority, now: Instant) -> Option<Box<Connection>> {
        let idle_timeout = self.settings.pool_idle_timeout;
        POOLS
            .try_with(|pools| {
                let mut pools = pools.borrow_mut();
                let (_, pools) = pools.iter_mut().find(|(client, _)| *client == self.id)?;
                let (_, idle) = pools.http1.iter_mut().find(|(a, _)| a == authority)?;
                while let Some(entry) = idle.pop_back() {
                    if now.saturating_duration_since(entry.since) < idle_timeout
                        && entry.conn.is_usable()
                    {
                        return Some(entry.conn);
                    }
                }
                None
            })
            .ok()
            .flatten()
    }

    /// Where a connection to `target` goes back after its exchange.
    pub(super) fn checkin(&self, target: &Target) -> Checkin {
        Checkin {
            client: self.id,
            authority: target.authority.clone(),
            max_idle: self.settings.max_idle_per_endpoint,
            idle_timeout: self.settings.pool_idle_timeout,
        }
    }
}

/// The pool an HTTP/1.1 connection lent to one exchange goes back to:
/// [`Checkin::release`] returns it to that pool on the thread that calls it (a
/// connection dropped instead is closed: its response was not read to the end).
pub(crate) struct Checkin {
    client: u64,
    authority: Authority,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Checkin {
    pub(super) fn release(self, conn: Box<Connection>) {
        if self.max_idle == 0 {
            return;
        }
        let Self {
            client,
            authority,
            max_idle,
            idle_timeout,
        } = self;
        let _ = POOLS.try_with(|pools| {
            let mut pools = pools.borrow_mut();
            let http1 = &mut pools_of(&mut pools, client).http1;
            let index = http1
                .iter()
                .position(|(a, _)| *a == authority)
                .unwrap_or_else(|| {
                    http1.push((authority, VecDeque::new()));
                    http1.len() - 1
                });
            let idle = &mut http1[index].1;
            let now = Instant::now();
            // The oldest connections are at the front: expired ones and those beyond
            // the bound go first.
            while idle.front().is_some_and(|e| {
                now.duration_since(e.since) >= idle_timeout || idle.len() >= max_idle
            }) {
                idle.pop_front();
            }
            idle.push_back(Idle { conn, since: now });
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
