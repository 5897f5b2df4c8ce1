//! The hash-chained audit trail (DESIGN.md §6).
//!
//! Each record stores `hash = SHA-256(canonical bytes || previous hash)`, where the
//! canonical bytes are the JSON array `[seq, event_id, time, source, type, subject,
//! data]` of the stored values (`data` is the stored JSON text). The first record's
//! previous hash is 64 zeros. One writer task appends, so the head is never contended
//! within a process; each append also re-reads the head inside its transaction, so a
//! second writer (another replica) fails on the `seq` key instead of forking the chain.
//! Events are deduplicated by their CloudEvents `id`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_kit::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The previous hash of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest accepted field of an audit event (id, source, type, subject).
const MAX_FIELD: usize = 512;
/// Largest accepted `data`, serialised.
const MAX_DATA_BYTES: usize = 64 * 1024;
/// Records read per page while verifying.
const VERIFY_PAGE: i64 = 1_000;

/// An audit event as it arrives: a CloudEvents 1.0 JSON envelope.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Unique event id (UUIDv7); the deduplication key.
    pub id: String,
    /// `/tessera/<service>`.
    pub source: String,
    /// `dev.tessera.<service>.<entity>.<verb>.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened (RFC 3339).
    pub time: String,
    /// What it is about (a user id, a client id).
    #[serde(default)]
    pub subject: Option<String>,
    /// The event's payload.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Value,
}

impl AuditEvent {
    /// Checks sizes and required fields; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("id", &self.id),
            ("source", &self.source),
            ("type", &self.event_type),
            ("time", &self.time),
        ] {
            if value.is_empty() || value.len() > MAX_FIELD {
                return Err(format!("`{name}` must be 1 to {MAX_FIELD} bytes"));
            }
        }
        if self.subject.as_ref().is_some_and(|s| s.len() > MAX_FIELD) {
            return Err(format!("`subject` must be at most {MAX_FIELD} bytes"));
        }
        if self.data.to_string().len() > MAX_DATA_BYTES {
            return Err(format!("`data` must be at most {MAX_DATA_BYTES} bytes"));
        }
        Ok(())
    }
}

/// A stored audit record.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    pub event_id: String,
    pub time: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: Option<String>,
    /// The payload as stored (JSON text, hashed as is).
    pub data: String,
    pub received_at_unix_nano: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// The stored values a record's hash covers.
#[derive(Debug, Clone, Copy)]
pub struct Canonical<'a> {
    pub seq: i64,
    pub event_id: &'a str,
    pub time: &'a str,
    pub source: &'a str,
    pub event_type: &'a str,
    pub subject: Option<&'a str>,
    pub data: &'a str,
}

impl Canonical<'_> {
    /// `SHA-256(canonical bytes || prev_hash)` in lowercase hex.
    pub fn chain_hash(&self, prev_hash: &str) -> String {
        let canonical = serde_json::json!([
            self.seq,
            self.event_id,
            self.time,
            self.source,
            self.event_type,
            self.subject,
            self.data
        ]);
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(canonical.to_string().as_bytes());
        context.update(prev_hash.as_bytes());
        crate::record::hex(context.finish().as_ref())
    }
}

impl AuditRecord {
    fn expected_hash(&self) -> String {
        Canonical {
            seq: self.seq,
            event_id: &self.event_id,
            time: &self.time,
            source: &self.source,
            event_type: &self.event_type,
            subject: self.subject.as_deref(),
            data: &self.data,
        }
        .chain_hash(&self.prev_hash)
    }
}

/// The outcome of an append.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Appended {
    /// The record's position in the chain.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// Whether the event id was already in the chain (nothing was added).
    pub duplicate: bool,
}

/// The verdict of walking the chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Verification {
    /// Whether every record's hash and link is correct and `seq` has no gap.
    pub valid: bool,
    /// Records checked.
    pub records: i64,
    /// `seq` of the last record (0 when empty).
    pub head_seq: i64,
    /// Hash of the last record (the genesis value when empty).
    pub head_hash: String,
    /// The first record that fails, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_invalid: Option<InvalidRecord>,
}

/// Where the chain breaks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct InvalidRecord {
    pub seq: i64,
    pub event_id: String,
    /// `hash_mismatch`, `broken_link` or `sequence_gap`.
    pub reason: String,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database failed; retry.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The writer has stopped (shutdown).
    #[error("the audit writer has stopped")]
    Stopped,
}

type Request = (AuditEvent, oneshot::Sender<Result<Appended, AuditError>>);

/// The single writer of the chain. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    requests: mpsc::Sender<Request>,
    pool: Pool,
}

impl AuditLog {
    /// Starts the writer task.
    pub fn spawn(pool: Pool, shutdown: CancellationToken) -> Self {
        let (requests, mut receiver) = mpsc::channel::<Request>(1024);
        let writer_pool = pool.clone();
        tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    r = receiver.recv() => r,
                    () = shutdown.cancelled() => return,
                };
                let Some((event, reply)) = request else {
                    return;
                };
                let result = append(&writer_pool, &event).await;
                let _ = reply.send(result);
            }
        });
        Self { requests, pool }
    }

    /// Appends `event` (or finds it already there) and returns its place.
    pub async fn append(&self, event: AuditEvent) -> Result<Appended, AuditError> {
        let (reply, result) = oneshot::channel();
        self.requests
            .send((event, reply))
            .await
            .map_err(|_| AuditError::Stopped)?;
        result.await.map_err(|_| AuditError::Stopped)?
    }

    /// Walks the whole chain.
    pub async fn verify(&self) -> Result<Verification, sqlx::Error> {
        let mut verdict = Verification {
            valid: true,
            records: 0,
            head_seq: 0,
            head_hash: GENESIS.to_owned(),
            first_invalid: None,
        };
        let mut after = 0i64;
        loop {
            let page = list(
                &self.pool,
                &AuditFilter::default(),
                Some(after),
                VERIFY_PAGE,
                true,
            )
            .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in page {
                let reason = if record.seq != verdict.head_seq + 1 {
                    Some("sequence_gap")
                } else if record.prev_hash != verdict.head_hash {
                    Some("broken_link")
                } else if record.expected_hash() != record.hash {
                    Some("hash_mismatch")
                } else {
                    None
                };
                if let (Some(reason), true) = (reason, verdict.first_invalid.is_none()) {
                    verdict.valid = false;
                    verdict.first_invalid = Some(InvalidRecord {
                        seq: record.seq,
                        event_id: record.event_id.clone(),
                        reason: reason.to_owned(),
                    });
                }
                verdict.records += 1;
                verdict.head_seq = record.seq;
                verdict.head_hash = record.hash;
            }
        }
        Ok(verdict)
    }

    /// Records matching `filter`, newest first (or oldest first after `after_seq`).
    pub async fn records(
        &self,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, sqlx::Error> {
        list(&self.pool, filter, before_seq, limit, false).await
    }
}

/// Filters of `GET /v1/audit/records`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub subject: Option<String>,
}

const AUDIT_COLUMNS: &str = "seq, event_id, event_time, source, event_type, subject, data, \
     received_at, prev_hash, hash";

/// `ascending`: records with seq > `bound`, oldest first; else seq < `bound` (or all),
/// newest first.
async fn list(
    pool: &Pool,
    filter: &AuditFilter,
    bound: Option<i64>,
    limit: i64,
    ascending: bool,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let (cmp, order) = if ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_records \
         WHERE ($1 IS NULL OR seq {cmp} $1) AND ($2 IS NULL OR event_type = $2) \
           AND ($3 IS NULL OR source = $3) AND ($4 IS NULL OR subject = $4) \
         ORDER BY seq {order} LIMIT $5"
    );
    service_kit::with_pool!(pool, |p| {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(bound)
            .bind(filter.event_type.clone())
            .bind(filter.source.clone())
            .bind(filter.subject.clone())
            .bind(limit)
            .fetch_all(p)
            .await?;
        rows.iter().map(from_row).collect()
    })
}

fn from_row<'r, R>(row: &'r R) -> Result<AuditRecord, sqlx::Error>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        event_id: row.try_get("event_id")?,
        time: row.try_get("event_time")?,
        source: row.try_get("source")?,
        event_type: row.try_get("event_type")?,
        subject: row.try_get("subject")?,
        data: row.try_get("data")?,
        received_at_unix_nano: row.try_get("received_at")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

async fn append(pool: &Pool, event: &AuditEvent) -> Result<Appended, AuditError> {
    let data = event.data.to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let received_at = i64::try_from(now).unwrap_or(i64::MAX);
    // SQLite: take the write lock up front. A deferred transaction that reads the head
    // and then writes cannot wait for the log writer's lock (SQLite answers "database is
    // locked" at once rather than risk a deadlock), so appends failed under ingest load.
    let begin = match pool {
        Pool::Sqlite(_) => "BEGIN IMMEDIATE",
        Pool::Postgres(_) => "BEGIN",
    };
    service_kit::with_pool!(pool, |p| {
        let mut tx = p.begin_with(begin).await?;
        let existing: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_records WHERE event_id = $1")
                .bind(&event.id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((seq, hash)) = existing {
            return Ok(Appended {
                seq,
                hash,
                duplicate: true,
            });
        }
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS.to_owned()));
        let seq = prev_seq + 1;
        let hash = Canonical {
            seq,
            event_id: &event.id,
            time: &event.time,
            source: &event.source,
            event_type: &event.event_type,
            subject: event.subject.as_deref(),
            data: &data,
        }
        .chain_hash(&prev_hash);
        sqlx::query(
            "INSERT INTO audit_records (seq, event_id, event_time, source, event_type, subject, \
             data, received_at, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(seq)
        .bind(&event.id)
        .bind(&event.time)
        .bind(&event.source)
        .bind(&event.event_type)
        .bind(event.subject.as_deref())
        .bind(&data)
        .bind(received_at)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Appended {
            seq,
            hash,
            duplicate: false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_every_field_and_the_previous_hash() {
        let record = Canonical {
            seq: 1,
            event_id: "e1",
            time: "t",
            source: "s",
            event_type: "ty",
            subject: None,
            data: "{}",
        };
        let base = record.chain_hash(GENESIS);
        assert_eq!(base.len(), 64);
        let changed = [
            Canonical {
                subject: Some("x"),
                ..record
            },
            Canonical {
                data: "{\"a\":1}",
                ..record
            },
            Canonical { seq: 2, ..record },
            Canonical {
                event_type: "other",
                ..record
            },
        ];
        for other in changed {
            assert_ne!(base, other.chain_hash(GENESIS));
        }
        assert_ne!(base, record.chain_hash(&base));
    }
}
