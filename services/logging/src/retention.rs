//! Background retention: debug records after `--retention-debug-days`, everything else
//! after `--retention-days` (PostgreSQL drops whole daily partitions). Audit records are
//! never expired.

use std::sync::Arc;
use std::time::Duration;

use service_kit::{CancellationToken, Clock, Database};

use crate::store::Store;

/// How often retention runs.
const INTERVAL: Duration = Duration::from_secs(600);
const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

/// Runs retention every ten minutes once the database is migrated.
pub fn spawn(
    store: Store,
    database: Database,
    clock: Arc<dyn Clock>,
    debug_days: u32,
    days: u32,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        database.wait_migrated().await;
        loop {
            let now = i64::try_from(clock.now().unix_timestamp_nanos()).unwrap_or(i64::MAX);
            let debug_cutoff = now - i64::from(debug_days) * DAY_NANOS;
            let cutoff = now - i64::from(days) * DAY_NANOS;
            match store.expire(debug_cutoff, cutoff).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "retention removed old log records"),
                Err(error) => tracing::warn!(%error, "retention failed; retrying later"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    });
}
