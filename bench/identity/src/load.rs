//! The closed-loop HTTP load generator and the latency summary every section reports.
//!
//! Each of N workers owns one keep-alive HTTP/1.1 connection (hyper's bare client
//! connection: no pool, no TLS, no redirects — the leanest client there is) and sends its
//! next request as soon as the previous answer is read in full. Requests that start in
//! the warm-up, or finish after the window, are not counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What one measured window produced: successful operations, failures, and the latency
/// of the successful ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) ops: u64,
    /// Successful answers including warm-up and those finishing after the window.
    pub(crate) answered: u64,
    pub(crate) errors: u64,
    pub(crate) window: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

impl Stats {
    /// Summarises the latencies of the successful operations of one window.
    pub(crate) fn from_samples(mut samples: Vec<Duration>, errors: u64, window: Duration) -> Self {
        samples.sort_unstable();
        // Nearest-rank percentile on the sorted samples (integer arithmetic, no casts).
        let pick = |permille: usize| {
            samples
                .len()
                .checked_sub(1)
                .map_or(Duration::ZERO, |last| samples[last * permille / 1000])
        };
        Self {
            ops: samples.len() as u64,
            answered: samples.len() as u64,
            errors,
            window,
            p50: pick(500),
            p99: pick(990),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    /// Successful operations per second of the window.
    #[expect(
        clippy::cast_precision_loss,
        reason = "counts stay far below 2^52; a rate needs no more precision"
    )]
    pub(crate) fn rate(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }
}

/// How long and how hard to load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) concurrency: usize,
    pub(crate) warmup: Duration,
    pub(crate) window: Duration,
}

/// Builds the request a worker sends next: `(worker index, sequence number in worker)`.
pub(crate) type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

/// Loads `addr` with `shape.concurrency` workers for the warm-up and the window; a
/// request counts as an error unless it is answered with `expected`.
pub(crate) async fn run(
    addr: SocketAddr,
    shape: Shape,
    expected: StatusCode,
    make: MakeRequest,
) -> anyhow::Result<Stats> {
    let measure_from = Instant::now() + shape.warmup;
    let end = measure_from + shape.window;
    let mut workers = tokio::task::JoinSet::new();
    for index in 0..shape.concurrency {
        let make = make.clone();
        workers.spawn(worker(addr, index, expected, make, measure_from, end));
    }
    let mut samples = Vec::new();
    let (mut errors, mut answered) = (0, 0);
    while let Some(done) = workers.join_next().await {
        let (mut own, own_errors, own_answered) = done.context("load worker panicked")?;
        samples.append(&mut own);
        errors += own_errors;
        answered += own_answered;
    }
    Ok(Stats {
        answered,
        ..Stats::from_samples(samples, errors, shape.window)
    })
}

async fn worker(
    addr: SocketAddr,
    index: usize,
    expected: StatusCode,
    make: MakeRequest,
    measure_from: Instant,
    end: Instant,
) -> (Vec<Duration>, u64, u64) {
    let mut samples = Vec::with_capacity(16 * 1024);
    let (mut errors, mut answered) = (0, 0);
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    let mut sequence = 0;
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        if connection.is_none() {
            if let Ok(sender) = connect(addr).await {
                connection = Some(sender);
            } else {
                errors += u64::from(started >= measure_from);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let Some(sender) = connection.as_mut() else {
            continue;
        };
        let request = make(index, sequence);
        sequence += 1;
        let outcome = exchange(sender, request).await;
        let finished = Instant::now();
        let counted = started >= measure_from && finished <= end;
        match outcome {
            Ok((status, _)) if status == expected => {
                answered += 1;
                if counted {
                    samples.push(finished - started);
                }
            }
            Ok(_) => errors += u64::from(counted),
            Err(_) => {
                errors += u64::from(counted);
                connection = None;
            }
        }
    }
    (samples, errors, answered)
}

/// Opens one keep-alive HTTP/1.1 connection (Nagle off, as every HTTP client does).
pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer.
pub(crate) async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// One request on a fresh connection: set-up, sanity checks and readiness polls.
pub(crate) async fn once(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut sender = connect(addr).await?;
    exchange(&mut sender, request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_on_sorted_samples() {
        let samples = (1..=1000).rev().map(Duration::from_micros).collect();
        let stats = Stats::from_samples(samples, 3, Duration::from_secs(2));
        assert_eq!(
            (stats.ops, stats.errors, stats.p50, stats.p99, stats.max),
            (
                1000,
                3,
                Duration::from_micros(500),
                Duration::from_micros(990),
                Duration::from_micros(1000)
            )
        );
        assert!((stats.rate() - 500.0).abs() < f64::EPSILON);
    }

    #[test]
    fn an_empty_window_reports_zeroes_not_a_panic() {
        let stats = Stats::from_samples(Vec::new(), 0, Duration::from_secs(1));
        assert_eq!(
            (stats.ops, stats.p99, stats.max),
            (0, Duration::ZERO, Duration::ZERO)
        );
    }
}
