//! Thread-per-core serving: the public listener is bound once per worker thread with
//! `SO_REUSEPORT`, and each worker runs its own current-thread Tokio runtime, so a
//! request is accepted, routed, proxied (over that thread's upstream pools, see
//! `proxy::client`) and answered on one thread. A request never wakes another thread;
//! on a multi-threaded runtime the server's connection task and the pooled upstream
//! connection's task handed every request across threads, and those wake-ups were a
//! fifth of the gateway's CPU time (bench/README.md, gateway).
//!
//! What stays shared between threads is state that must be one for the whole process:
//! the route table (`ArcSwap`), breakers, outlier and retry-budget counters (atomics and
//! short mutexes), the rate limiter, the verifier's key and token caches, metrics. The
//! admin listener and the background tasks (route reload, JWKS refresh, limiter sweep,
//! log shipping) run on the caller's runtime.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use service_kit::accept;
use service_kit::{CancellationToken, HttpSettings, Listeners, Service};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::Built;
use crate::edge::direct::Edge;
use crate::edge::h1;

/// Pending connections per listener (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 1024;

/// Pause after an accept error (e.g. out of file descriptors) before trying again, so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// The worker count for a `--threads` value: 0 means one per available core.
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        thread::available_parallelism().map_or(1, std::num::NonZero::get)
    }
}

/// Binds `count` listening sockets on `addr`, all with `SO_REUSEPORT` so the kernel
/// spreads incoming connections over them. Port 0 is resolved by the first socket and
/// reused for the others, so tests can bind a free port.
pub fn bind_public(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serves the gateway `built`: its data path on `public` (one worker thread with its own
/// current-thread runtime per listener), its admin router on `admin` on the calling
/// runtime, until `shutdown`. Then readiness fails at once, every listener stops
/// accepting, and in-flight requests get the drain timeout; returns when all workers
/// are done.
pub async fn serve_per_core(
    built: Built,
    public: Vec<std::net::TcpListener>,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let Built {
        service,
        gateway,
        settings,
        client_idle_timeout,
    } = built;
    let limits = h1::Limits::new(&settings, client_idle_timeout);
    let edge = Edge::new(gateway, service.metrics(), &settings);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let workers = public.len();
    tracing::info!(
        service = "gateway",
        public = ?public.first().and_then(|l| l.local_addr().ok()),
        admin = ?admin.local_addr().ok(),
        workers,
        "listening"
    );
    for (index, listener) in public.into_iter().enumerate() {
        let edge = Arc::clone(&edge);
        let shutdown = shutdown.clone();
        let done = done_tx.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        thread::Builder::new()
            .name(format!("gateway-io-{index}"))
            .spawn(move || {
                let edge = edge.for_thread();
                let cut = runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => accept(listener, edge, shutdown, &settings, limits).await,
                        Err(error) => {
                            tracing::error!(%error, "worker cannot use its listener");
                            0
                        }
                    }
                });
                // Connection tasks still held by the runtime are dropped here, on this
                // thread, where they were spawned.
                drop(runtime);
                let _ = done.send(cut);
            })?;
    }
    drop(done_tx);
    let workers_done = async {
        let mut cut = 0;
        while let Some(worker_cut) = done_rx.recv().await {
            cut += worker_cut;
        }
        cut
    };
    with_admin(&service, settings, admin, shutdown, workers_done).await;
    Ok(())
}

/// Serves the gateway `built` on `listeners` from the calling runtime (one public
/// listener; `run` and tests), with the same data path as [`serve_per_core`].
pub async fn serve_listeners(built: Built, listeners: Listeners, shutdown: CancellationToken) {
    let Built {
        service,
        gateway,
        settings,
        client_idle_timeout,
    } = built;
    let limits = h1::Limits::new(&settings, client_idle_timeout);
    let edge = Edge::new(gateway, service.metrics(), &settings);
    tracing::info!(
        service = "gateway",
        public = ?listeners.public.local_addr().ok(),
        admin = ?listeners.admin.local_addr().ok(),
        "listening"
    );
    let public = accept(listeners.public, edge, shutdown.clone(), &settings, limits);
    with_admin(&service, settings, listeners.admin, shutdown, public).await;
}

/// Runs `public` (resolving to the number of connections cut at the drain timeout)
/// beside the admin listener and the drain on `shutdown`.
async fn with_admin(
    service: &Service,
    settings: HttpSettings,
    admin: TcpListener,
    shutdown: CancellationToken,
    public: impl Future<Output = usize>,
) {
    let readiness = service.readiness().clone();
    let admin_router = service.admin_router();
    let draining = async {
        shutdown.cancelled().await;
        readiness.set_draining();
        tracing::info!(
            service = "gateway",
            drain_timeout_ms = settings.drain_timeout.as_millis(),
            "shutting down; draining"
        );
    };
    let admin = async {
        accept::serve(
            "admin",
            admin,
            admin_router,
            shutdown.clone(),
            settings.drain_timeout,
            settings.max_header_bytes,
        )
        .await
        .cut
    };
    let ((), admin_cut, public_cut) = tokio::join!(draining, admin, public);
    let cut = admin_cut + public_cut;
    if cut > 0 {
        tracing::warn!(
            service = "gateway",
            cut,
            "drain timeout reached; cut open connections"
        );
    }
    tracing::info!(service = "gateway", "stopped");
}

/// The public accept loop: each connection served by the gateway's own HTTP/1.1 loop
/// (`edge::h1`, which hands unusual ones to hyper) with the gateway's [`Edge`], spawned
/// on the current runtime, until `shutdown`; then open connections get the drain
/// timeout. Returns how many were cut at its end. The same shape as
/// `service_kit::accept::serve`, which serves an axum router instead.
async fn accept(
    listener: TcpListener,
    edge: Arc<Edge>,
    shutdown: CancellationToken,
    settings: &HttpSettings,
    limits: h1::Limits,
) -> usize {
    // This worker's own token: its connections clone it and check it without touching
    // the lock every worker shares.
    let shutdown = shutdown.child_token();
    let fallback = h1::fallback(limits);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(listener = "public", %error, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                };
                // Requests are small and latency matters more than packet count.
                let _ = stream.set_nodelay(true);
                connections.spawn(h1::serve_connection(
                    stream,
                    peer,
                    Arc::clone(&edge),
                    Arc::clone(&fallback),
                    shutdown.clone(),
                    limits,
                ));
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(settings.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    let cut = if drained.is_ok() {
        0
    } else {
        connections.len()
    };
    connections.shutdown().await;
    cut
}
