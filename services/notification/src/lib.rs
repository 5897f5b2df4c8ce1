//! Tessera notification: event-driven email, SMS and push delivery (DESIGN.md §1, §5).
//!
//! `user.created` from profile becomes a welcome message; services request notifications
//! through the API with an `Idempotency-Key`. Either way a notification is stored with
//! one job per channel before anything is acknowledged; delivery workers send the jobs
//! (templates per locale, the user's channel preferences from profile, per-channel rate
//! limits), retry transient failures with backoff and jitter, and publish
//! `dev.tessera.notification.delivery.failed.v1` through the outbox when a job fails.
//!
//! The library exposes [`build`] (the service ready to serve) and [`run`]; the binary
//! only parses the command line.

pub mod api;
pub mod channel;
pub mod config;
pub mod db;
pub mod delivery;
pub mod intake;
pub mod ratelimit;
pub mod recipients;
pub mod state;
pub mod templates;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use service_kit::log_shipping::{Shipper, TokenSource};
use service_kit::{CancellationToken, Clock, Database, Listeners, Pool, Service, SystemClock};
use tessera_auth::{ClientCredentials, HttpJwks, Verifier};
use tessera_events::{Bus, EventMetrics, JetStreamBus, Relay};
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::channel::file::FileChannel;
use crate::channel::smtp::{SmtpChannel, SmtpSettings};
use crate::channel::webhook::WebhookChannel;
use crate::channel::{Channel, ChannelKind};
use crate::config::Config;
use crate::delivery::{Delivery, DeliveryMetrics, Route};
use crate::intake::Intake;
use crate::ratelimit::Pacer;
use crate::recipients::Recipients;
use crate::state::AppState;
use crate::templates::Templates;

/// How often expired idempotency keys and old inbox rows are removed.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// Inbox rows are kept this long: far beyond any redelivery of an event.
const INBOX_RETENTION_SECS: i64 = 7 * 86_400;

/// What notification is given besides its config: the clock and the event bus
/// (JetStream standalone; the all-in-one binary passes its in-process bus).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub clock: Arc<dyn Clock>,
    pub bus: Bus,
}

/// Why notification cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong; the message names it.
    #[error("configuration error: {0}")]
    Config(String),
    /// A template is broken; the message names the file.
    #[error("configuration error: {0}")]
    Templates(#[from] templates::TemplateError),
    /// The database could not be prepared.
    #[error(transparent)]
    Db(#[from] service_kit::db::DbError),
    /// The NATS URL is unusable.
    #[error("--nats-url: {0}")]
    Bus(#[from] tessera_events::BusError),
}

/// Notification, built and ready to serve.
#[derive(Debug)]
pub struct Notification {
    pub service: Service,
    pub state: AppState,
    /// The delivery workers: await [`Workers::stopped`] after the server stopped, before
    /// the process exits, so a send in progress is finished and recorded.
    pub workers: Workers,
}

/// The delivery workers (and the task that starts them once the migrations ran).
#[derive(Debug, Clone, Default)]
pub struct Workers(TaskTracker);

impl Workers {
    /// Waits until every worker stopped after `shutdown`: each finishes and records the
    /// send at hand (a send killed by the process exit may have reached the server
    /// without being recorded, and is sent again once its lease runs out). Gives up
    /// after `limit`.
    pub async fn stopped(self, limit: Duration) {
        self.0.close();
        if tokio::time::timeout(limit, self.0.wait()).await.is_err() {
            tracing::warn!(
                limit_ms = limit.as_millis(),
                "delivery workers still sending at exit; those jobs are sent again after their lease"
            );
        }
    }
}

/// `Name: value` → the header name and its (secret) value.
fn auth_header(
    value: Option<&SecretString>,
    setting: &str,
) -> Result<Option<(HeaderName, SecretString)>, StartError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let (name, secret) = value.expose_secret().split_once(':').ok_or_else(|| {
        StartError::Config(format!(
            "{setting} must look like `Authorization: Bearer <token>`"
        ))
    })?;
    let name = HeaderName::try_from(name.trim())
        .map_err(|_| StartError::Config(format!("{setting}: invalid header name")))?;
    Ok(Some((name, SecretString::from(secret.trim().to_owned()))))
}

/// The configured channels.
fn channels(config: &Config) -> Result<HashMap<ChannelKind, Arc<dyn Channel>>, StartError> {
    let email = &config.email;
    let from: Mailbox = email
        .email_from
        .parse()
        .map_err(|e| StartError::Config(format!("--email-from: {e}")))?;
    let mut channels: HashMap<ChannelKind, Arc<dyn Channel>> = HashMap::new();
    let email_channel: Arc<dyn Channel> = if email.email_transport == "file" {
        let dir = email
            .email_dir
            .as_ref()
            .ok_or_else(|| StartError::Config("--email-transport file needs --email-dir".into()))?;
        Arc::new(
            FileChannel::new(dir, ChannelKind::Email, from.clone()).map_err(StartError::Config)?,
        )
    } else {
        Arc::new(
            SmtpChannel::new(&SmtpSettings {
                url: email.smtp_url.clone(),
                host: email.smtp_host.clone(),
                port: email.smtp_port,
                tls: email.smtp_tls,
                username: email.smtp_username.clone(),
                password: email.smtp_password.clone(),
                from: from.clone(),
                timeout: Duration::from_secs(email.smtp_timeout_secs),
                pool_size: config.delivery.delivery_workers,
            })
            .map_err(StartError::Config)?,
        )
    };
    channels.insert(ChannelKind::Email, email_channel);
    let providers = &config.providers;
    let timeout = Duration::from_secs(providers.provider_timeout_secs);
    for (kind, url, auth, dir, setting) in [
        (
            ChannelKind::Sms,
            &providers.sms_webhook_url,
            &providers.sms_webhook_auth,
            &providers.sms_dir,
            "--sms-webhook-auth",
        ),
        (
            ChannelKind::Push,
            &providers.push_webhook_url,
            &providers.push_webhook_auth,
            &providers.push_dir,
            "--push-webhook-auth",
        ),
    ] {
        let channel: Arc<dyn Channel> = match (url, dir) {
            (Some(url), _) => Arc::new(WebhookChannel::new(
                url.clone(),
                kind,
                auth_header(auth.as_ref(), setting)?,
                timeout,
            )),
            (None, Some(dir)) => {
                Arc::new(FileChannel::new(dir, kind, from.clone()).map_err(StartError::Config)?)
            }
            (None, None) => continue,
        };
        channels.insert(kind, channel);
    }
    Ok(channels)
}

/// The profile client, authenticating with notification's own service token.
fn recipients(profile: &config::ProfileArgs) -> Recipients {
    let tokens = ClientCredentials::new(
        profile.token_url.clone(),
        profile.client_id.clone(),
        profile.client_secret.clone(),
    );
    let ttl = Duration::from_secs(profile.preferences_ttl_secs);
    Recipients::new(&profile.profile_url, tokens, ttl)
}

/// Each configured channel with its rate limit.
fn routes(
    channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    delivery: &config::DeliveryArgs,
) -> HashMap<ChannelKind, Route> {
    channels
        .into_iter()
        .map(|(kind, channel)| {
            let rate = match kind {
                ChannelKind::Email => delivery.email_rate_per_sec,
                ChannelKind::Sms => delivery.sms_rate_per_sec,
                ChannelKind::Push => delivery.push_rate_per_sec,
            };
            let pacer = Arc::new(Pacer::new(rate));
            (kind, Route { channel, pacer })
        })
        .collect()
}

/// Removes expired idempotency keys and old inbox rows now and then.
fn spawn_pruning(
    pool: Pool,
    clock: Arc<dyn Clock>,
    key_ttl_secs: i64,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PRUNE_INTERVAL) => {}
            }
            let now = clock.now().unix_timestamp();
            if let Err(error) = db::notifications::prune_keys(&pool, now - key_ttl_secs).await {
                tracing::warn!(%error, "cannot prune idempotency keys");
            }
            let pruned = service_kit::with_pool!(&pool, |p| async {
                let mut conn = p.acquire().await?;
                tessera_events::inbox::prune(&mut *conn, now - INBOX_RETENTION_SECS).await
            }
            .await);
            if let Err(error) = pruned {
                tracing::warn!(%error, "cannot prune the inbox");
            }
        }
    });
}

/// Builds notification: database (migrated in the background), templates (validated
/// now), channels, token verifier, profile client, event consumer, outbox relay,
/// delivery workers, routes and readiness checks. Background tasks stop with `shutdown`.
pub fn build(
    config: &Config,
    runtime: Runtime,
    shutdown: &CancellationToken,
) -> Result<Notification, StartError> {
    let Runtime { clock, bus } = runtime;
    let delivery_cfg = &config.delivery;
    let schedule = delivery_cfg.retry_schedule().map_err(StartError::Config)?;
    let templates = Arc::new(Templates::load(
        delivery_cfg.templates_dir.as_deref(),
        &delivery_cfg.default_locale,
    )?);
    let channels = channels(config)?;
    let database = Database::open(
        &config.database.database_url,
        config.database.database_max_connections,
        db::migrations(),
        shutdown.clone(),
    )?;
    let pool = database.pool().clone();

    let auth = &config.auth;
    let verifier = Verifier::with_clock(
        auth.verifier_config(),
        Arc::new(HttpJwks::new(auth.jwks_url.clone())),
        clock.clone(),
    );
    verifier.spawn_refresh(shutdown.clone());
    let recipients = Arc::new(recipients(&config.profile));
    let events = EventMetrics::new();
    let relay = Relay::new(pool.clone(), bus.sink())
        .with_metrics(events.clone())
        .with_clock(clock.clone());
    let wake = Arc::new(Notify::new());
    let configured: Arc<HashSet<ChannelKind>> = Arc::new(channels.keys().copied().collect());
    let routes = routes(channels, delivery_cfg);
    let delivery_metrics = DeliveryMetrics::default();
    let delivery = Delivery {
        pool: pool.clone(),
        templates: templates.clone(),
        routes: Arc::new(routes),
        recipients: recipients.clone(),
        schedule: Arc::new(schedule),
        lease: Duration::from_secs(delivery_cfg.delivery_lease_secs),
        clock: clock.clone(),
        relay: relay.handle(),
        wake: wake.clone(),
        metrics: delivery_metrics.clone(),
    };

    let intake = Intake {
        pool: pool.clone(),
        templates: templates.clone(),
        channels: configured.clone(),
        clock: clock.clone(),
        wake: wake.clone(),
        recipients,
    };
    let (consumer, handlers) = intake.consumer();
    bus.subscribe(consumer, handlers, events.clone(), shutdown);

    // Workers, relay and pruning use the tables: start them once the migrations ran.
    let (migrated, stop, workers) = (
        database.clone(),
        shutdown.clone(),
        delivery_cfg.delivery_workers,
    );
    let (prune_pool, prune_clock) = (pool.clone(), clock.clone());
    let key_ttl = i64::try_from(delivery_cfg.idempotency_ttl_secs).unwrap_or(i64::MAX);
    let workers_handle = Workers::default();
    let tracked = workers_handle.0.clone();
    workers_handle.0.spawn(async move {
        migrated.wait_migrated().await;
        if migrated.is_migrated() {
            relay.spawn(stop.clone());
            delivery.spawn(workers, &stop, &tracked);
            spawn_pruning(prune_pool, prune_clock, key_ttl, stop);
        }
    });

    let state = AppState {
        pool,
        verifier: verifier.clone(),
        templates,
        channels: configured,
        clock,
        wake,
    };
    let service =
        Service::new("notification", config.http.settings()).public(api::router(state.clone()));
    events.register(service.metrics());
    delivery_metrics.register(service.metrics());
    bus.add_readiness_check(service.readiness());
    database.add_readiness_check(service.readiness());
    verifier.add_readiness_check(service.readiness());
    Ok(Notification {
        service,
        state,
        workers: workers_handle,
    })
}

/// Runs notification on `listeners` until `shutdown`, on NATS JetStream.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    run_shipping_logs(config, listeners, shutdown, None).await
}

/// Like [`run`], with the counters of the log `shipper` (started by
/// `telemetry::init_with_shipping_token`) in notification's metrics.
pub async fn run_shipping_logs(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    shipper: Option<Shipper>,
) -> Result<(), StartError> {
    let bus = JetStreamBus::connect(config.bus.config("notification")).await?;
    let runtime = Runtime {
        clock: Arc::new(SystemClock),
        bus: Bus::JetStream(bus),
    };
    let notification = build(&config, runtime, &shutdown)?;
    if let Some(shipper) = &shipper {
        shipper.register_metrics(notification.service.metrics());
    }
    let lease = Duration::from_secs(config.delivery.delivery_lease_secs);
    notification.service.serve(listeners, shutdown).await;
    // After the lease, another replica sends the job anyway: waiting longer helps nobody.
    notification.workers.stopped(lease).await;
    Ok(())
}

/// The token source for shipped logs (notification's own client credentials, the ones
/// it reads profiles with); none without `--log-endpoint`.
pub fn log_token_source(config: &Config) -> Option<Arc<dyn TokenSource>> {
    config.log_shipping.log_endpoint.as_ref()?;
    let profile = &config.profile;
    Some(Arc::new(ClientCredentials::new(
        profile.token_url.clone(),
        profile.client_id.clone(),
        profile.client_secret.clone(),
    )))
}
