//! Tessera logging (DESIGN.md §6): every service's logs in one place, and the audit
//! trail that cannot be altered unnoticed.
//!
//! - Ingestion: OTLP/HTTP at `/v1/logs` (protobuf or JSON, gzip), through a bounded
//!   queue to one writer task that stores batches in one transaction each.
//! - Storage: SQLite (WAL, FTS5) or PostgreSQL (daily partitions, binary `COPY`,
//!   tsvector index); retention in the background.
//! - Queries: filters, keyset pages, histograms, live tail over SSE; the explorer page.
//! - Audit: hash-chained, append-only records with a verify endpoint.
//!
//! The library exposes [`build`] and [`run`]; the binary only parses the command line.

pub mod api;
pub mod audit;
pub mod config;
pub mod consumer;
pub mod ingest;
pub mod otlp;
pub mod record;
pub mod retention;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use service_kit::{
    CancellationToken, Clock, Database, Listeners, Migrations, Service, SystemClock,
};
use tessera_auth::{HttpJwks, JwkSet, StaticJwks, Verifier, VerifierConfig};
use tessera_events::{Bus, EventMetrics, JetStreamBus, NatsConfig};

use crate::config::Config;
use crate::ingest::{Ingest, IngestMetrics};
use crate::state::AppState;

/// Timestamps up to this far ahead of the receiving clock are kept as sent; later ones
/// are clamped (clock skew of senders is seconds, not hours).
const MAX_FUTURE: Duration = Duration::from_secs(3_600);

/// The embedded migrations.
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    }
}

/// Why logging cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is missing or wrong; the message names it.
    #[error("configuration error: {0}")]
    Config(String),
    /// The database could not be prepared.
    #[error(transparent)]
    Db(#[from] service_kit::db::DbError),
}

/// How logging is wired beyond its config: the clock, and the event bus audit events
/// arrive on (the all-in-one binary passes its in-process bus; [`run`] connects to
/// `--nats-url`).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub clock: Arc<dyn Clock>,
    pub bus: Option<Bus>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            bus: None,
        }
    }
}

/// Logging, built and ready to serve.
#[derive(Debug)]
pub struct Logging {
    pub service: Service,
    pub state: AppState,
}

fn verifier(config: &Config, shutdown: &CancellationToken) -> Result<Arc<Verifier>, StartError> {
    let auth = &config.auth;
    if auth.insecure_disable_auth {
        // Never consulted: every caller is accepted.
        return Ok(Verifier::new(
            VerifierConfig::new("unused", vec!["unused".into()]),
            Arc::new(StaticJwks::new(JwkSet { keys: Vec::new() })),
        ));
    }
    let (Some(jwks_url), Some(issuer)) = (&auth.jwks_url, &auth.issuer) else {
        return Err(StartError::Config(
            "set --jwks-url and --issuer (TESSERA_JWKS_URL, TESSERA_ISSUER), or --insecure-disable-auth in the all-in-one mode".into(),
        ));
    };
    let verifier = Verifier::new(
        VerifierConfig::new(issuer.clone(), auth.audiences.clone()),
        Arc::new(HttpJwks::new(jwks_url.clone())),
    );
    verifier.clone().spawn_refresh(shutdown.clone());
    Ok(verifier)
}

/// Builds logging: database (migrated in the background), writer tasks, retention, the
/// audit consumer when `runtime.bus` is set, and the service with routes and readiness.
pub fn build(
    config: &Config,
    runtime: Runtime,
    shutdown: &CancellationToken,
) -> Result<Logging, StartError> {
    let Runtime { clock, bus } = runtime;
    let database = Database::open(
        &config.database.database_url,
        config.database.database_max_connections,
        migrations(),
        shutdown.clone(),
    )?;
    let verifier = verifier(config, shutdown)?;
    let store = store::Store::new(database.pool().clone());
    let metrics = IngestMetrics::default();
    let ingest = Ingest::spawn(
        store.clone(),
        config.ingest.ingest_queue_records,
        config.ingest.ingest_batch_records as usize,
        metrics.clone(),
        shutdown.clone(),
    );
    let audit = audit::AuditLog::spawn(database.pool().clone(), shutdown.clone());
    let retention = &config.retention;
    retention::spawn(
        store.clone(),
        database.clone(),
        clock.clone(),
        retention.retention_debug_days,
        retention.retention_days,
        shutdown.clone(),
    );
    let limits = otlp::Limits {
        max_body_bytes: config.ingest.max_log_body_bytes as usize,
        max_attributes: config.ingest.max_log_attributes as usize,
        max_future_nanos: i64::try_from(MAX_FUTURE.as_nanos()).unwrap_or(i64::MAX),
        max_past_nanos: i64::from(retention.retention_days) * store::DAY_NANOS,
    };
    let state = AppState {
        database: database.clone(),
        store,
        ingest,
        audit,
        limits,
        clock,
        verifier: verifier.clone(),
        auth_disabled: config.auth.insecure_disable_auth,
    };
    let service =
        Service::new("logging", config.http.settings()).public(api::router(state.clone()));
    let registry = service.metrics();
    registry.register(
        "log_records_stored",
        "Log records committed",
        metrics.stored,
    );
    registry.register(
        "log_records_refused",
        "Log records refused with 429 (queue full)",
        metrics.refused,
    );
    registry.register(
        "log_records_failed",
        "Log records lost to database errors (senders got 503)",
        metrics.failed,
    );
    database.add_readiness_check(service.readiness());
    if let Some(bus) = &bus {
        let events = EventMetrics::new();
        events.register(service.metrics());
        bus.add_readiness_check(service.readiness());
        // Subscribed at once, before the all-in-one binary starts its in-process bus, so
        // no audit event is published while nobody listens; until the migrations have
        // run, appends fail and the bus redelivers.
        consumer::subscribe(bus, &state.audit, events, shutdown);
    }
    if !config.auth.insecure_disable_auth {
        verifier.add_readiness_check(service.readiness());
    }
    Ok(Logging { service, state })
}

/// Runs logging on `listeners` until `shutdown`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let bus = match &config.nats_url {
        Some(url) => Some(Bus::JetStream(
            JetStreamBus::connect(NatsConfig::new(url.clone(), "logging"))
                .await
                .map_err(|e| StartError::Config(format!("--nats-url: {e}")))?,
        )),
        None => None,
    };
    let runtime = Runtime {
        clock: Arc::new(SystemClock),
        bus,
    };
    let logging = build(&config, runtime, &shutdown)?;
    logging.service.serve(listeners, shutdown).await;
    Ok(())
}
