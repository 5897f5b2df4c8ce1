//! The per-thread pool of idle HTTP/1.1 upstream connections: most recently used
//! first, bounded per endpoint, expired after the idle timeout, and swept every second
//! while it holds any, so a connection the upstream closed (or that expired) is let go
//! even when no request comes (nothing else reads an idle connection).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use hyper_util::client::legacy::Client;

use super::connect::Connector;
use super::h1::Connection;
use super::{Target, UpstreamClient};

/// How often a thread's idle connections are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    /// This thread's pools. Only this thread's requests use them; the lock (never
    /// contended on the thread-per-core server) lets the sweeper task run wherever its
    /// runtime puts it.
    static POOLS: Arc<Mutex<Pools>> = Arc::new(Mutex::new(Pools::default()));
}

/// Runs `f` on this thread's pools; `None` only while the thread is exiting.
pub(super) fn with_pools<R>(f: impl FnOnce(&mut Pools) -> R) -> Option<R> {
    POOLS.try_with(|pools| f(&mut lock(pools))).ok()
}

fn lock(pools: &Mutex<Pools>) -> MutexGuard<'_, Pools> {
    pools.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One thread's pools, by client id. A thread serves one client (one gateway) and a
/// handful of endpoints, so the pools are short lists searched in order, cheaper than
/// hashing an id and an endpoint twice per request.
#[derive(Default)]
pub(super) struct Pools {
    clients: Vec<(u64, ThreadPools)>,
    /// Whether a sweeper task looks after these pools.
    swept: bool,
}

impl Pools {
    /// The pools of client `id`, created when missing.
    pub(super) fn of(&mut self, id: u64) -> &mut ThreadPools {
        let index = self
            .clients
            .iter()
            .position(|(client, _)| *client == id)
            .unwrap_or_else(|| {
                self.clients.push((id, ThreadPools::default()));
                self.clients.len() - 1
            });
        &mut self.clients[index].1
    }

    /// Drops the idle connections that expired or that the upstream closed; whether
    /// any are left.
    fn sweep(&mut self, now: Instant) -> bool {
        let mut left = false;
        for (_, client) in &mut self.clients {
            let idle_timeout = client.idle_timeout;
            for (_, idle) in &mut client.http1 {
                idle.retain(|e| {
                    now.saturating_duration_since(e.since) < idle_timeout && e.conn.is_usable()
                });
                left |= !idle.is_empty();
            }
        }
        left
    }
}

/// Checks `pools` every [`SWEEP_EVERY`] until they hold no idle connection.
async fn sweep(pools: Arc<Mutex<Pools>>) {
    let mut sweeping = Sweeping(Some(pools));
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(shared) = &sweeping.0 else { return };
        let mut pools = lock(shared);
        if !pools.sweep(Instant::now()) {
            // Under the same lock as the check: a connection released after it starts
            // a new sweeper.
            pools.swept = false;
            drop(pools);
            sweeping.0 = None;
            return;
        }
    }
}

/// Marks the pools unswept when the runtime drops their sweeper (a thread may host
/// another runtime later, whose releases must start a new one).
struct Sweeping(Option<Arc<Mutex<Pools>>>);

impl Drop for Sweeping {
    fn drop(&mut self) {
        if let Some(pools) = self.0.take() {
            lock(&pools).swept = false;
        }
    }
}

/// One client's pools on one thread.
#[derive(Default)]
pub(super) struct ThreadPools {
    /// Idle HTTP/1.1 connections by endpoint (`Target::pool`), oldest first.
    http1: Vec<(u64, VecDeque<Idle>)>,
    /// The client's idle timeout (set with its first connection).
    idle_timeout: Duration,
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
    /// The most recently used idle connection to `target` on this thread (its socket
    /// and buffers are the warmest), dropping closed and expired ones on the way.
    /// `now` is the time of the attempt (no clock read of its own).
    pub(super) fn checkout(&self, target: &Target, now: Instant) -> Option<Box<Connection>> {
        let idle_timeout = self.settings.pool_idle_timeout;
        with_pools(|pools| {
            let (_, pools) = pools
                .clients
                .iter_mut()
                .find(|(client, _)| *client == self.id)?;
            let (_, idle) = pools
                .http1
                .iter_mut()
                .find(|(key, _)| *key == target.pool)?;
            while let Some(entry) = idle.pop_back() {
                if now.saturating_duration_since(entry.since) < idle_timeout
                    && entry.conn.is_usable()
                {
                    return Some(entry.conn);
                }
            }
            None
        })
        .flatten()
    }

    /// Where a connection to `target` goes back after its exchange.
    pub(super) fn checkin(&self, target: &Target) -> Checkin {
        Checkin {
            client: self.id,
            pool: target.pool,
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
    pool: u64,
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
            pool,
            max_idle,
            idle_timeout,
        } = self;
        let _ = POOLS.try_with(|shared| {
            let mut pools = lock(shared);
            let pools = &mut *pools;
            let client = pools.of(client);
            client.idle_timeout = idle_timeout;
            let http1 = &mut client.http1;
            let index = http1
                .iter()
                .position(|(key, _)| *key == pool)
                .unwrap_or_else(|| {
                    http1.push((pool, VecDeque::new()));
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
            if !pools.swept
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                pools.swept = true;
                runtime.spawn(sweep(Arc::clone(shared)));
            }
        });
    }
}

impl fmt::Debug for Checkin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkin")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}
