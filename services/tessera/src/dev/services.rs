//! Identity, profile, notification and logging configured as `tessera dev` runs them:
//! SQLite files under the data directory, the in-process bus, mail and SMS as files.

use std::net::SocketAddr;

use anyhow::Context as _;
use service_kit::{CancellationToken, Listeners};
use tessera_events::{Bus, InProcessBus};

use super::Started;
use super::args::DevArgs;
use super::secrets::{NOTIFICATION_CLIENT, secret_file, write_client_registry};

/// The in-process bus stands in for NATS; the flag is required by the standalone binaries
/// and never dialled here.
const UNUSED_NATS_URL: &str = "nats://127.0.0.1:4222";

/// `service`'s configuration parsed from `args` as its own binary would, or one error
/// naming the service.
pub(super) fn parse_config<T: clap::Parser>(
    service: &str,
    args: impl IntoIterator<Item = String>,
) -> anyhow::Result<T> {
    T::try_parse_from(args).map_err(|e| anyhow::anyhow!("{service} configuration: {}", e.render()))
}

/// Identity issuing as `issuer`, with its generated secrets and client registry; also
/// returns its pool, whose outbox `run` relays to the in-process bus.
pub(super) async fn start_identity(
    args: &DevArgs,
    issuer: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Started, service_kit::Pool)> {
    let listeners = Listeners::bind_addrs(args.identity_listen, args.identity_admin_listen)
        .await
        .context("identity (--identity-listen / --identity-admin-listen)")?;
    let seal_key = secret_file(&args.data_dir.join("secrets/identity-keyset.key"))?;
    let database = args.data_dir.join("identity.db");
    let registry = write_client_registry(&args.data_dir)?;
    let pepper = secret_file(&args.data_dir.join("secrets/identity-client-pepper.key"))?;
    let mut identity_args = vec![
        "tessera-identity".to_owned(),
        "--issuer".to_owned(),
        issuer.to_owned(),
        "--database-url".to_owned(),
        format!("sqlite:{}", database.display()),
        "--keyset-encryption-key".to_owned(),
        seal_key,
        "--client-registry".to_owned(),
        registry.display().to_string(),
        "--client-secret-pepper".to_owned(),
        pepper,
    ];
    if !args.bootstrap_admins.is_empty() {
        identity_args.extend([
            "--bootstrap-admins".to_owned(),
            args.bootstrap_admins.join(","),
        ]);
    }
    let config = parse_config::<tessera_identity::config::Cli>("identity", identity_args)?.config;
    let identity = tessera_identity::build(&config, tessera_identity::Runtime::default(), shutdown)
        .context("identity cannot start")?;
    let pool = identity.state.pool.clone();
    Ok((
        Started::new("identity", identity.service, listeners, shutdown)?,
        pool,
    ))
}

/// Profile trusting identity at `identity`, publishing on `bus`.
pub(super) async fn start_profile(
    args: &DevArgs,
    issuer: &str,
    identity: SocketAddr,
    bus: &InProcessBus,
    shutdown: &CancellationToken,
) -> anyhow::Result<Started> {
    let listeners = Listeners::bind_addrs(args.profile_listen, args.profile_admin_listen)
        .await
        .context("profile (--profile-listen / --profile-admin-listen)")?;
    let config: tessera_profile::config::Config = parse_config(
        "profile",
        [
            "tessera-profile".to_owned(),
            "--database-url".to_owned(),
            format!("sqlite:{}", args.data_dir.join("profile.db").display()),
            "--issuer".to_owned(),
            issuer.to_owned(),
            "--jwks-url".to_owned(),
            format!("http://{identity}/.well-known/jwks.json"),
            "--nats-url".to_owned(),
            UNUSED_NATS_URL.to_owned(),
        ],
    )?;
    let runtime = tessera_profile::Runtime {
        clock: std::sync::Arc::new(service_kit::SystemClock),
        bus: Bus::InProcess(bus.clone()),
    };
    let profile =
        tessera_profile::build(&config, runtime, shutdown).context("profile cannot start")?;
    Started::new("profile", profile.service, listeners, shutdown)
}

/// Notification trusting identity at `identity`, reading profiles at `profile` with its
/// own client credentials, consuming from `bus`; deliveries become files.
pub(super) async fn start_notification(
    args: &DevArgs,
    issuer: &str,
    identity: SocketAddr,
    profile: SocketAddr,
    bus: &InProcessBus,
    shutdown: &CancellationToken,
) -> anyhow::Result<Started> {
    let listeners = Listeners::bind_addrs(args.notification_listen, args.notification_admin_listen)
        .await
        .context("notification (--notification-listen / --notification-admin-listen)")?;
    let data = &args.data_dir;
    let secret = secret_file(&data.join("secrets/notification-client.secret"))?;
    let config: tessera_notification::config::Config = parse_config(
        "notification",
        [
            "tessera-notification".to_owned(),
            "--database-url".to_owned(),
            format!("sqlite:{}", data.join("notification.db").display()),
            "--issuer".to_owned(),
            issuer.to_owned(),
            "--jwks-url".to_owned(),
            format!("http://{identity}/.well-known/jwks.json"),
            "--nats-url".to_owned(),
            UNUSED_NATS_URL.to_owned(),
            "--profile-url".to_owned(),
            format!("http://{profile}"),
            "--token-url".to_owned(),
            format!("http://{identity}/oauth2/token"),
            "--client-id".to_owned(),
            NOTIFICATION_CLIENT.to_owned(),
            "--client-secret".to_owned(),
            secret,
            // Mail, SMS and push become files in the data directory.
            "--email-transport".to_owned(),
            "file".to_owned(),
            "--email-dir".to_owned(),
            data.join("mail").display().to_string(),
            "--sms-dir".to_owned(),
            data.join("sms").display().to_string(),
            "--push-dir".to_owned(),
            data.join("push").display().to_string(),
        ],
    )?;
    let runtime = tessera_notification::Runtime {
        clock: std::sync::Arc::new(service_kit::SystemClock),
        bus: Bus::InProcess(bus.clone()),
    };
    let notification = tessera_notification::build(&config, runtime, shutdown)
        .context("notification cannot start")?;
    // As the binary does: a send at hand is finished and recorded before the process
    // exits (bounded by the lease, after which the job is another worker's anyway).
    let lease = std::time::Duration::from_secs(config.delivery.delivery_lease_secs);
    let workers = notification.workers.stopped(lease);
    Ok(Started::new("notification", notification.service, listeners, shutdown)?.then(workers))
}

/// Logging on `listeners` (bound first, see [`DevArgs::bind_logging`]), chaining the audit
/// records it consumes from `bus`.
pub(super) fn start_logging(
    args: &DevArgs,
    listeners: Listeners,
    bus: &InProcessBus,
    shutdown: &CancellationToken,
) -> anyhow::Result<Started> {
    let config: tessera_logging::config::Config = parse_config(
        "logging",
        [
            "tessera-logging".to_owned(),
            "--database-url".to_owned(),
            format!("sqlite:{}", args.data_dir.join("logging.db").display()),
            // One process on loopback: the gateway's admin route is the guard.
            "--insecure-disable-auth".to_owned(),
        ],
    )?;
    let runtime = tessera_logging::Runtime {
        clock: std::sync::Arc::new(service_kit::SystemClock),
        // Subscribed now, before the bus starts delivering.
        bus: Some(Bus::InProcess(bus.clone())),
    };
    let logging =
        tessera_logging::build(&config, runtime, shutdown).context("logging cannot start")?;
    Started::new("logging", logging.service, listeners, shutdown)
}
