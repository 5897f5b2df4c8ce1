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
use tessera_bench_report::Stats;
use tokio::net::TcpStream;

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
