//! WebSocket pass-through: once the upstream answered `101 Switching Protocols` and the
//! client got it, the two upgraded connections are spliced byte for byte. The gateway
//! does not parse frames. After the upgrade the request timeouts no longer apply (a
//! WebSocket lives as long as its users want); the only limit is the idle timeout: a
//! connection with no bytes in either direction for that long is closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::balance::InFlight;

/// Splices the client's and the upstream's upgraded connections in a background task.
/// `in_flight` keeps counting the WebSocket against its endpoint until it closes.
pub(crate) fn splice(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, in_flight: InFlight) {
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade abandoned before the splice");
                return;
            }
        };
        let activity = Arc::new(AtomicU64::new(0));
        let mut client = Active::new(TokioIo::new(client), activity.clone());
        let mut upstream = Active::new(TokioIo::new(upstream), activity.clone());
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
                Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                Err(error) => tracing::debug!(%error, "upgraded connection ended"),
            },
            () = idle_for(&activity, idle) => {
                tracing::debug!(?idle, "upgraded connection closed after being idle");
            }
        }
    });
}

/// Returns once `activity` has not moved for a whole `idle` period. Checking once per
/// period closes an idle connection between one and two periods after its last byte,
/// without touching a timer on every read.
async fn idle_for(activity: &AtomicU64, idle: Duration) {
    let mut seen = activity.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(idle).await;
        let now = activity.load(Ordering::Relaxed);
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// An I/O stream that counts bytes read into a shared activity counter.
struct Active<T> {
    io: T,
    activity: Arc<AtomicU64>,
}

impl<T> Active<T> {
    fn new(io: T, activity: Arc<AtomicU64>) -> Self {
        Self { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.activity.fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idleness_is_detected_only_when_no_byte_moved_for_a_whole_period() {
        let period = Duration::from_millis(300);
        let activity = Arc::new(AtomicU64::new(0));
        let watcher = tokio::spawn({
            let activity = activity.clone();
            async move { idle_for(&activity, period).await }
        });
        for _ in 0..16 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            activity.fetch_add(1, Ordering::Relaxed);
        }
        assert!(!watcher.is_finished(), "bytes kept moving");
        tokio::time::sleep(period * 3).await;
        assert!(watcher.is_finished(), "no byte for two periods");
    }
}
