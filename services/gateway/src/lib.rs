//! The API gateway: the single entry for web and mobile clients (DESIGN.md §1–3).
//!
//! Routes come from a YAML file ([`routes`]) that is hot-reloaded; each request is matched
//! by host and longest prefix, authenticated with the shared verification library
//! (JWKS from identity), throttled with GCRA ([`ratelimit`], local or Redis), and
//! forwarded to a pooled, load-balanced, circuit-broken upstream ([`proxy`]).

pub mod config;
mod deadline;
pub mod edge;
mod http1;
pub mod proxy;
pub mod ratelimit;
pub mod routes;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use secrecy::ExposeSecret;
use service_kit::log_shipping::{Shipper, TokenSource};
use service_kit::{CancellationToken, Clock, HttpSettings, Listeners, Service, SystemClock};
use tessera_auth::{ClientCredentials, HttpJwks, Verifier};

use crate::config::{Config, LimiterBackend};
use crate::edge::{Gateway, GatewayMetrics};
use crate::ratelimit::{Limiter, LocalLimiter, RedisLimiter};
use crate::routes::Routes;

/// How often the local rate-limit store drops clients whose budget is full again.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is missing or wrong.
    #[error("configuration error: {0}")]
    Config(String),
    /// The routes file is unreadable or invalid.
    #[error(transparent)]
    Routes(#[from] routes::RoutesError),
    /// A listener cannot be bound, or a worker thread cannot start.
    #[error("cannot listen on {addr} ({which} listener): {source}")]
    Listen {
        /// `public` or `admin`.
        which: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The gateway, built and ready to serve.
#[derive(Debug)]
pub struct Built {
    pub service: Service,
    pub gateway: Gateway,
    /// The limits the service was built with (drain timeout, header size, request
    /// timeout, body size), for [`serve`].
    pub settings: HttpSettings,
    /// How long a client connection may stay idle between requests.
    pub client_idle_timeout: Duration,
}

/// Builds the gateway; background tasks (route reload, JWKS refresh, limiter sweeping)
/// stop with `shutdown`.
pub async fn build(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: &CancellationToken,
) -> Result<Built, StartError> {
    let settings = config.http.settings();
    let client = proxy::UpstreamClient::new();
    let routes = Routes::load(
        config.routes_file.clone(),
        client,
        config.http.max_body_bytes,
    )?;
    routes.spawn_watch(shutdown.clone());

    let verifier = Verifier::with_clock(
        config.auth.verifier_config(),
        Arc::new(HttpJwks::new(config.auth.jwks_url.clone())),
        clock.clone(),
    );
    verifier.spawn_refresh(shutdown.clone());

    let limiter: Arc<dyn Limiter> = match config.rate_limit_backend {
        LimiterBackend::Local => {
            let local = LocalLimiter::new(config.rate_limit_max_keys, clock);
            local.spawn_sweeper(SWEEP_EVERY, shutdown.clone());
            local
        }
        LimiterBackend::Redis => {
            let url = config.redis_url.as_ref().ok_or_else(|| {
                StartError::Config(
                    "--rate-limit-backend redis needs --redis-url / TESSERA_REDIS_URL".into(),
                )
            })?;
            Arc::new(
                RedisLimiter::connect(url.expose_secret())
                    .await
                    .map_err(|e| StartError::Config(format!("TESSERA_REDIS_URL: {e}")))?,
            )
        }
    };

    let service = Service::new("gateway", settings);
    let gateway = Gateway {
        routes,
        verifier: verifier.clone(),
        limiter,
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        metrics: GatewayMetrics::register(service.metrics()),
    };
    let service = service.public_catch_all(
        Router::new()
            .fallback(edge::handle)
            // Behind one `Arc`: axum clones the state for every request, and one
            // reference count is cheaper than the gateway's eight.
            .with_state(Arc::new(gateway.clone())),
    );
    verifier.add_readiness_check(service.readiness());
    Ok(Built {
        service,
        gateway,
        settings,
        client_idle_timeout: Duration::from_secs(config.client_idle_timeout_secs),
    })
}

/// Runs the gateway on `listeners` until `shutdown`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    run_shipping_logs(config, listeners, shutdown, None).await
}

/// Like [`run`], with the counters of the log `shipper` (started by
/// `telemetry::init_with_shipping_token`) in the gateway's metrics.
pub async fn run_shipping_logs(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    shipper: Option<Shipper>,
) -> Result<(), StartError> {
    let built = build(&config, Arc::new(SystemClock), &shutdown).await?;
    if let Some(shipper) = &shipper {
        shipper.register_metrics(built.service.metrics());
    }
    serve::serve_listeners(built, listeners, shutdown).await;
    Ok(())
}

/// Runs the gateway thread-per-core (see [`serve`]) until `shutdown`: `--threads`
/// public listeners on `--listen` with `SO_REUSEPORT`, each served by its own worker
/// thread, and the admin listener on the calling runtime, which also runs the background
/// tasks. `shipper`'s counters join the metrics when logs are shipped.
pub async fn run_per_core(
    config: Config,
    shutdown: CancellationToken,
    shipper: Option<Shipper>,
) -> Result<(), StartError> {
    let threads = serve::worker_count(config.threads);
    let public =
        serve::bind_public(config.http.listen, threads).map_err(|source| StartError::Listen {
            which: "public",
            addr: config.http.listen,
            source,
        })?;
    let admin_addr = config.http.admin_listen;
    let admin = tokio::net::TcpListener::bind(admin_addr)
        .await
        .map_err(|source| StartError::Listen {
            which: "admin",
            addr: admin_addr,
            source,
        })?;
    let built = build(&config, Arc::new(SystemClock), &shutdown).await?;
    if let Some(shipper) = &shipper {
        shipper.register_metrics(built.service.metrics());
    }
    serve::serve_per_core(built, public, admin, shutdown)
        .await
        .map_err(|source| StartError::Listen {
            which: "public",
            addr: config.http.listen,
            source,
        })
}

/// The token source for log shipping: a client-credentials source against
/// `--token-url` when set (needs `--client-secret`), none otherwise (and none when logs
/// are not shipped).
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
