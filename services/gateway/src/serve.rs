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

use std::io;
use std::net::SocketAddr;
use std::thread;

use service_kit::accept;
use service_kit::{CancellationToken, HttpSettings, Service};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Pending connections per listener (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 1024;

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

/// Serves `service` (built with `settings`): its public router on `public` (one worker
/// thread with its own current-thread runtime per listener), its admin router on `admin`
/// on the calling runtime, until `shutdown`. Then readiness fails at once, every listener
/// stops accepting, and in-flight requests get the drain timeout; returns when all
/// workers are done.
pub async fn serve_per_core(
    service: Service,
    settings: HttpSettings,
    public: Vec<std::net::TcpListener>,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let router = service.public_router();
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
        let router = router.clone();
        let shutdown = shutdown.clone();
        let done = done_tx.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        thread::Builder::new()
            .name(format!("gateway-io-{index}"))
            .spawn(move || {
                let cut = runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            accept::serve(
                                "public",
                                listener,
                                router,
                                shutdown,
                                settings.drain_timeout,
                                settings.max_header_bytes,
                            )
                            .await
                            .cut
                        }
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
    let workers_done = async {
        let mut cut = 0;
        while let Some(worker_cut) = done_rx.recv().await {
            cut += worker_cut;
        }
        cut
    };
    let ((), admin_cut, public_cut) = tokio::join!(draining, admin, workers_done);
    let cut = admin_cut + public_cut;
    if cut > 0 {
        tracing::warn!(
            service = "gateway",
            cut,
            "drain timeout reached; cut open connections"
        );
    }
    tracing::info!(service = "gateway", "stopped");
    Ok(())
}
