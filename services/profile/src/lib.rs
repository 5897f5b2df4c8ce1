//! Tessera profile: user profiles, and the reference layout for a new Tessera service.
//!
//! Users create, read and change their own profile (contact email, display name, locale,
//! phone, notification preferences per channel); clients with the `service` role read
//! anyone's. Creating a profile writes `dev.tessera.profile.user.created.v1` to the
//! transactional outbox in the same database transaction (DESIGN.md §5).
//!
//! The library exposes [`build`] (the service ready to serve) and [`run`]; the binary
//! only parses the command line.

pub mod api;
pub mod config;
pub mod db;
pub mod events;
pub mod fields;
pub mod state;

use std::sync::Arc;

use service_kit::log_shipping::{Shipper, TokenSource};
use service_kit::{CancellationToken, Clock, Database, Listeners, Service, SystemClock};
use tessera_auth::{ClientCredentials, HttpJwks, Verifier};
use tessera_events::{Bus, EventMetrics, JetStreamBus, Relay};

use crate::config::Config;
use crate::state::AppState;

/// What profile is given besides its config: the clock and the event bus (JetStream
/// standalone; the all-in-one binary passes its in-process bus).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub clock: Arc<dyn Clock>,
    pub bus: Bus,
}

/// Why profile cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be prepared.
    #[error(transparent)]
    Db(#[from] service_kit::db::DbError),
    /// The NATS URL is unusable.
    #[error("--nats-url: {0}")]
    Bus(#[from] tessera_events::BusError),
    /// A setting is missing or wrong; the message names it.
    #[error("configuration error: {0}")]
    Config(String),
}

/// Profile, built and ready to serve.
#[derive(Debug)]
pub struct Profile {
    pub service: Service,
    pub state: AppState,
}

/// Builds profile: database (migrated in the background), token verifier (keys fetched
/// in the background), outbox relay, routes and readiness checks. Background tasks stop
/// with `shutdown`.
pub fn build(
    config: &Config,
    runtime: Runtime,
    shutdown: &CancellationToken,
) -> Result<Profile, StartError> {
    let Runtime { clock, bus } = runtime;
    let database = Database::open(
        &config.database.database_url,
        config.database.database_max_connections,
        db::migrations(),
        shutdown.clone(),
    )?;
    let auth = &config.auth;
    let verifier = Verifier::with_clock(
        auth.verifier_config(),
        Arc::new(HttpJwks::new(auth.jwks_url.clone())),
        clock.clone(),
    );
    verifier.spawn_refresh(shutdown.clone());
    let events = EventMetrics::new();
    let relay = Relay::new(database.pool().clone(), bus.sink())
        .with_metrics(events.clone())
        .with_clock(clock.clone());
    let state = AppState {
        pool: database.pool().clone(),
        verifier: verifier.clone(),
        clock,
        relay: relay.handle(),
    };
    // The relay reads the outbox table: start it once the migrations have run.
    let (migrated, stop) = (database.clone(), shutdown.clone());
    tokio::spawn(async move {
        migrated.wait_migrated().await;
        if migrated.is_migrated() {
            relay.spawn(stop);
        }
    });
    let service =
        Service::new("profile", config.http.settings()).public(api::router(state.clone()));
    events.register(service.metrics());
    bus.add_readiness_check(service.readiness());
    database.add_readiness_check(service.readiness());
    verifier.add_readiness_check(service.readiness());
    Ok(Profile { service, state })
}

/// Runs profile on `listeners` until `shutdown`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    run_shipping_logs(config, listeners, shutdown, None).await
}

/// Like [`run`], with the counters of the log `shipper` (started by
/// `telemetry::init_with_shipping_token`) in profile's metrics.
pub async fn run_shipping_logs(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    shipper: Option<Shipper>,
) -> Result<(), StartError> {
    let bus = JetStreamBus::connect(config.bus.config("profile")).await?;
    let runtime = Runtime {
        clock: Arc::new(SystemClock),
        bus: Bus::JetStream(bus),
    };
    let profile = build(&config, runtime, &shutdown)?;
    if let Some(shipper) = &shipper {
        shipper.register_metrics(profile.service.metrics());
    }
    profile.service.serve(listeners, shutdown).await;
    Ok(())
}

/// The token source for shipped logs: none without `--log-endpoint` or `--token-url`;
/// `--token-url` and `--client-secret` come together.
pub fn log_token_source(config: &Config) -> Result<Option<Arc<dyn TokenSource>>, StartError> {
    if config.log_shipping.log_endpoint.is_none() {
        return Ok(None);
    }
    match (&config.token_url, &config.client_secret) {
        (None, None) => Ok(None),
        (Some(url), Some(secret)) => Ok(Some(Arc::new(ClientCredentials::new(
            url.clone(),
            config.client_id.clone(),
            secret.clone(),
        )))),
        (Some(_), None) => Err(StartError::Config(
            "--token-url needs --client-secret / TESSERA_CLIENT_SECRET".into(),
        )),
        (None, Some(_)) => Err(StartError::Config(
            "--client-secret needs --token-url / TESSERA_TOKEN_URL (identity's /oauth2/token)"
                .into(),
        )),
    }
}
