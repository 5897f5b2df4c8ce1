//! The accept loop behind each listener, with a graceful drain that really ends.
//!
//! `axum::serve` spawns connections as detached tasks: after its drain they would keep
//! running inside the process, which matters when several services share one process
//! (the all-in-one binary, tests). Here connections live in a `JoinSet` owned by the
//! loop, so a drain that times out aborts them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Pause after an accept error (e.g. out of file descriptors) before trying again, so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// How a listener ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open at the drain timeout, which were cut.
    pub cut: usize,
}

/// Serves `router` on `listener` until `shutdown`; then stops accepting, lets open
/// connections finish their requests for up to `drain_timeout`, and aborts the rest.
///
/// Connections are spawned on the current runtime, so a caller running one
/// current-thread runtime per core (the gateway) keeps each connection on its thread.
pub async fn serve(
    which: &'static str,
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain_timeout: Duration,
    max_header_bytes: usize,
) -> Drained {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    // Bounds the HTTP/1.1 request head; hyper answers 431 beyond it.
    builder.http1().max_buf_size(max_header_bytes.max(8192));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(listener = which, %error, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                };
                // Requests are small and latency matters more than packet count.
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(with_connect_info(router.clone(), remote));
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    let cut = if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_ok()
    {
        0
    } else {
        connections.len()
    };
    connections.shutdown().await;
    Drained { cut }
}

/// The router with the client address available as `ConnectInfo<SocketAddr>`.
fn with_connect_info(
    router: Router,
    remote: SocketAddr,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    router.map_request(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        request.map(axum::body::Body::new)
    })
}
