//! Log storage on SQLite or PostgreSQL: batched inserts, filtered newest-first queries
//! with keyset pagination, counts per time bucket, and retention.

mod filter;
mod postgres;
mod sqlite;

use std::sync::Arc;

use service_kit::Pool;

pub use filter::{Cursor, Filter};

use crate::record::{LogRow, NewRecord};

/// Nanoseconds in a day: the PostgreSQL partition width.
pub const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

/// The log store of one database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    partitions: Arc<postgres::Partitions>,
}

/// One bucket of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// Start of the bucket, nanoseconds since the epoch.
    pub start_unix_nano: i64,
    /// Matching records in it.
    pub count: i64,
}

impl Store {
    /// The store over `pool` (migrated).
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            partitions: Arc::default(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How many [`Store::insert`] calls may run at once: 2 on PostgreSQL (one encodes
    /// and sends while the other commits), 1 on SQLite (a single writer).
    pub fn parallel_writes(&self) -> usize {
        match &self.pool {
            Pool::Sqlite(_) => 1,
            Pool::Postgres(_) => 2,
        }
    }

    /// Inserts `records` in one transaction; returns their ids in order.
    pub async fn insert(&self, records: &[NewRecord]) -> Result<Vec<i64>, sqlx::Error> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::insert(pool, records).await,
            Pool::Postgres(pool) => postgres::insert(pool, &self.partitions, records).await,
        }
    }

    /// Up to `limit` records matching `filter`, newest first, after `cursor`.
    pub async fn query(
        &self,
        filter: &Filter,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<LogRow>, sqlx::Error> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::query(pool, filter, cursor, limit).await,
            Pool::Postgres(pool) => postgres::query(pool, filter, cursor, limit).await,
        }
    }

    /// Matching records counted per `bucket_nanos` between `filter.since` and
    /// `filter.until`, oldest bucket first; empty buckets are left out.
    pub async fn histogram(
        &self,
        filter: &Filter,
        bucket_nanos: i64,
    ) -> Result<Vec<Bucket>, sqlx::Error> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::histogram(pool, filter, bucket_nanos).await,
            Pool::Postgres(pool) => postgres::histogram(pool, filter, bucket_nanos).await,
        }
    }

    /// Deletes records older than the retention: below INFO before `debug_cutoff`, all
    /// before `cutoff` (nanoseconds). Returns how many rows (SQLite) or partitions
    /// plus rows (PostgreSQL) went.
    pub async fn expire(&self, debug_cutoff: i64, cutoff: i64) -> Result<u64, sqlx::Error> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::expire(pool, debug_cutoff, cutoff).await,
            Pool::Postgres(pool) => {
                postgres::expire(pool, &self.partitions, debug_cutoff, cutoff).await
            }
        }
    }
}
