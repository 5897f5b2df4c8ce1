//! NATS JetStream: the connection, the `TESSERA` stream (created or updated at start),
//! publishing with `Nats-Msg-Id`, and the `bus` readiness check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, header};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use service_kit::{CancellationToken, Readiness};
use tokio::task::JoinHandle;

use crate::consumer::{self, ConsumerConfig};
use crate::envelope::OutboxMessage;
use crate::handler::Router;
use crate::metrics::EventMetrics;
use crate::relay::{Relay, RelayConfig, RelayHandle};
use crate::sink::{PublishError, Sink, with_root};

/// Where and how to reach NATS, and the stream's shape.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:4222` (credentials in the URL are never logged).
    pub url: String,
    /// The client name the server shows (`tessera-<service>`).
    pub client_name: String,
    /// The stream name; `TESSERA` in production (tests use private ones).
    pub stream: String,
    /// First subject token of everything this bus publishes and consumes; `tessera` in
    /// production. Outbox rows keep `tessera.…` and are mapped when published.
    pub subject_root: String,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate publish.
    pub duplicate_window: Duration,
    /// How long the stream keeps events (consumers that were down catch up within it).
    pub max_age: Duration,
    /// Longest wait for a publish acknowledgement.
    pub publish_timeout: Duration,
}

impl NatsConfig {
    /// Production defaults for `url`: stream `TESSERA` on `tessera.>`, 2-minute duplicate
    /// window, events kept 7 days.
    pub fn new(url: impl Into<String>, service: &str) -> Self {
        Self {
            url: url.into(),
            client_name: format!("tessera-{service}"),
            stream: "TESSERA".to_owned(),
            subject_root: crate::envelope::SUBJECT_ROOT.to_owned(),
            // JetStream's default; the relay's retries of an unknown outcome come well within.
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 86_400),
            publish_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the bus could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL or connection options were refused.
    #[error("NATS connection: {0}")]
    Connect(String),
    /// The stream could not be created, updated or looked up.
    #[error("JetStream stream: {0}")]
    Stream(String),
    /// A consumer could not be created or read.
    #[error("JetStream consumer: {0}")]
    Consumer(String),
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    config: NatsConfig,
    stream_ready: AtomicBool,
}

/// A connection to NATS JetStream, shared by a service's relay and consumers.
#[derive(Debug, Clone)]
pub struct JetStreamBus {
    inner: Arc<Inner>,
}

impl JetStreamBus {
    /// Connects in the background (the server may be down at start; the client keeps
    /// retrying) and returns at once. Fails only on a malformed URL.
    pub async fn connect(config: NatsConfig) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name(&config.client_name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(config.url.as_str())
            .await
            .map_err(|e| BusError::Connect(e.to_string()))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.publish_timeout);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                js,
                config,
                stream_ready: AtomicBool::new(false),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NatsConfig {
        &self.inner.config
    }

    /// The NATS client (core subscriptions, e.g. to watch a dead-letter subject).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The JetStream context (tests read streams and consumers through it).
    pub fn context(&self) -> &jetstream::Context {
        &self.inner.js
    }

    /// The NATS subject a canonical `tessera.…` subject is published on.
    pub fn subject(&self, canonical: &str) -> String {
        with_root(canonical, &self.inner.config.subject_root)
    }

    /// The dead-letter subject of `consumer`: `tessera.dlq.<consumer>`.
    pub fn dead_letter_subject(&self, consumer: &str) -> String {
        format!("{}.dlq.{consumer}", self.inner.config.subject_root)
    }

    /// Creates the stream or updates it to this configuration (idempotent; every replica
    /// of every service does it at start).
    pub async fn ensure_stream(&self) -> Result<(), BusError> {
        let config = &self.inner.config;
        let stream_config = stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_root)],
            duplicate_window: config.duplicate_window,
            max_age: config.max_age,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            ..Default::default()
        };
        self.inner
            .js
            .create_or_update_stream(stream_config)
            .await
            .map_err(|e| BusError::Stream(e.to_string()))?;
        self.inner.stream_ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn ensure_stream_once(&self) -> Result<(), BusError> {
        if self.inner.stream_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.ensure_stream().await
    }

    /// Registers the `bus` readiness check: connected and the stream exists.
    pub fn add_readiness_check(&self, readiness: &Readiness) {
        let bus = self.clone();
        readiness.add("bus", move || {
            let bus = bus.clone();
            async move { bus.check().await }
        });
    }

    /// The readiness answer: connected to NATS and the stream exists.
    pub async fn check(&self) -> Result<(), String> {
        if self.inner.client.connection_state() != async_nats::connection::State::Connected {
            return Err("not connected to NATS".to_owned());
        }
        self.ensure_stream_once().await.map_err(|e| e.to_string())
    }

    /// Starts a durable pull consumer delivering to `router` until `shutdown`; it creates
    /// the stream and consumer when the server is reachable and reconnects by itself.
    pub fn consume(
        &self,
        config: ConsumerConfig,
        router: Router,
        metrics: EventMetrics,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(consumer::run(
            self.clone(),
            config,
            router,
            metrics,
            shutdown,
        ))
    }

    /// Publishes `payload` on `subject` (already mapped) with `headers`, awaiting the ack.
    pub(crate) async fn publish_acked(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        self.ensure_stream_once()
            .await
            .map_err(|e| PublishError(e.to_string()))?;
        let timeout = self.inner.config.publish_timeout;
        let publish = async {
            let ack = self
                .inner
                .js
                .publish_with_headers(subject, headers, payload)
                .await?;
            ack.await
        };
        match tokio::time::timeout(timeout, publish).await {
            Ok(Ok(_ack)) => Ok(()),
            Ok(Err(error)) => {
                if matches!(
                    error.kind(),
                    jetstream::context::PublishErrorKind::StreamNotFound
                ) {
                    // Deleted behind our back: create it again before the next attempt.
                    self.inner.stream_ready.store(false, Ordering::Release);
                }
                Err(PublishError(error.to_string()))
            }
            Err(_) => Err(PublishError(format!(
                "no acknowledgement within {timeout:?}"
            ))),
        }
    }
}

/// Relays `database`'s outbox to JetStream from a synchronous `build`: connects in the
/// background, starts the relay once the migrations have run, and registers the `bus`
/// readiness check (failing until connected). Returns the handle to poke after commits.
pub fn spawn_jetstream_relay(
    nats: NatsConfig,
    database: service_kit::Database,
    relay: RelayConfig,
    metrics: EventMetrics,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> RelayHandle {
    let handle = RelayHandle::default();
    let connected: Arc<OnceLock<JetStreamBus>> = Arc::new(OnceLock::new());
    let check = connected.clone();
    readiness.add("bus", move || {
        let bus = check.get().cloned();
        async move {
            match bus {
                Some(bus) => bus.check().await,
                None => Err("connecting to NATS".to_owned()),
            }
        }
    });
    let wake = handle.clone();
    tokio::spawn(async move {
        let bus = match JetStreamBus::connect(nats).await {
            Ok(bus) => bus,
            Err(error) => {
                tracing::error!(%error, "cannot use NATS; events stay in the outbox");
                return;
            }
        };
        let _ = connected.set(bus.clone());
        if let Err(error) = bus.ensure_stream().await {
            // Retried on the first publish and by the readiness check.
            tracing::warn!(%error, "JetStream stream not ready yet");
        }
        database.wait_migrated().await;
        if database.is_migrated() {
            Relay::new(database.pool().clone(), Arc::new(bus))
                .with_config(relay)
                .with_metrics(metrics)
                .with_handle(wake)
                .spawn(shutdown);
        }
    });
    handle
}

impl Sink for JetStreamBus {
    fn publish<'a>(
        &'a self,
        message: &'a OutboxMessage,
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            headers.insert(header::NATS_MESSAGE_ID, message.id.as_str());
            headers.insert("Content-Type", "application/cloudevents+json");
            self.publish_acked(
                self.subject(&message.subject),
                headers,
                Bytes::from(message.event.clone()),
            )
            .await
        })
    }
}
