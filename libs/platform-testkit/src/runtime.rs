//! Running services on a thread with a current-thread runtime of its own.

use std::future::Future;

use service_kit::CancellationToken;

/// Runs `start` on a new thread with its own current-thread runtime, waits for the value
/// it returns, and keeps that runtime (and what `start` spawned on it) alive until the
/// returned token is cancelled.
pub async fn on_own_runtime<T, F, Fut>(start: F) -> (T, CancellationToken)
where
    T: Send + 'static,
    F: FnOnce(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let (started, received) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let value = start(stop.clone()).await;
            let _ = started.send(value);
            stop.cancelled().await;
        });
    });
    let value = received.await.expect("started on its own runtime");
    (value, shutdown)
}
