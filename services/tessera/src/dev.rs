//! `tessera dev`: starts every built service on loopback with embedded defaults (SQLite
//! files and generated secrets under the data directory) and reports what runs where.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Parser as _;
use service_kit::log_shipping::Shipper;
use service_kit::{
    CancellationToken, HttpSettings, Listeners, LogFormat, Readiness, Service, TelemetryArgs,
};
use tessera_events::{Bus, InProcessBus};

/// Services not built yet, with the issue that builds each; printed so nobody wonders.
pub const NOT_BUILT: &[(&str, u32)] = &[];

/// `tessera dev` settings. Everything has a default: `tessera dev` alone runs the platform.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Directory for SQLite files, generated secrets, mail and other state; created if
    /// missing.
    #[arg(
        long,
        env = "TESSERA_DATA_DIR",
        default_value = "./.tessera",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Admin listener of the all-in-one process (/healthz, /readyz over every service,
    /// /metrics).
    #[arg(
        long,
        env = "TESSERA_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,

    /// The gateway: the one address clients use (and the token issuer).
    #[arg(
        long,
        env = "TESSERA_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// The gateway's admin listener.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "ADDR")]
    pub gateway_admin_listen: SocketAddr,

    /// Identity's own public API (the gateway forwards to it; direct access is for
    /// debugging).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub identity_listen: SocketAddr,

    /// Identity's admin listener (/healthz, /readyz, /metrics, /debug/keys).
    #[arg(long, default_value = "127.0.0.1:9091", value_name = "ADDR")]
    pub identity_admin_listen: SocketAddr,

    /// Profile's own public API (the gateway forwards `/v1/profiles` to it).
    #[arg(long, default_value = "127.0.0.1:8083", value_name = "ADDR")]
    pub profile_listen: SocketAddr,

    /// Profile's admin listener.
    #[arg(long, default_value = "127.0.0.1:9093", value_name = "ADDR")]
    pub profile_admin_listen: SocketAddr,

    /// Notification's own public API (the gateway forwards `/v1/notifications` to it).
    #[arg(long, default_value = "127.0.0.1:8084", value_name = "ADDR")]
    pub notification_listen: SocketAddr,

    /// Notification's admin listener.
    #[arg(long, default_value = "127.0.0.1:9094", value_name = "ADDR")]
    pub notification_admin_listen: SocketAddr,

    /// Logging's own public API: OTLP ingestion at `/v1/logs` (every service's records are
    /// shipped there), queries, the audit chain and the explorer (the gateway forwards
    /// `/logging/` to it for admins).
    #[arg(long, default_value = "127.0.0.1:8085", value_name = "ADDR")]
    pub logging_listen: SocketAddr,

    /// Logging's admin listener.
    #[arg(long, default_value = "127.0.0.1:9095", value_name = "ADDR")]
    pub logging_admin_listen: SocketAddr,

    /// Emails that get the admin role when they sign up, comma-separated.
    #[arg(long, env = "TESSERA_BOOTSTRAP_ADMINS", value_delimiter = ',')]
    pub bootstrap_admins: Vec<String>,

    /// Log line format: `pretty` (default here, for a terminal) or `json`.
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Which log records to write, in `tracing` filter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_name = "FILTER")]
    pub log_filter: String,
}

impl DevArgs {
    /// The log settings.
    pub fn telemetry(&self) -> TelemetryArgs {
        TelemetryArgs {
            log_format: self.log_format,
            log_filter: self.log_filter.clone(),
        }
    }

    /// Binds logging's listeners, first of all: the process's one shipping layer needs
    /// logging's address before any record is written.
    pub async fn bind_logging(&self) -> anyhow::Result<Listeners> {
        Listeners::bind_addrs(self.logging_listen, self.logging_admin_listen)
            .await
            .context("logging (--logging-listen / --logging-admin-listen)")
    }
}

/// Installs the process's log subscriber (see [`crate::telemetry`]), shipping to the
/// in-process logging on `logging`; logging runs with auth disabled here, so no token.
pub fn init_telemetry(args: &DevArgs, logging: &Listeners) -> anyhow::Result<Option<Shipper>> {
    let endpoint = format!("http://{}/v1/logs", logging.public_addr()?);
    crate::telemetry::init(&args.telemetry(), endpoint)
}

/// A service started in this process.
#[derive(Debug)]
struct Running {
    name: &'static str,
    public: SocketAddr,
    admin: SocketAddr,
}

/// Runs until `shutdown` fires, logging on `logging_listeners` (from
/// [`DevArgs::bind_logging`]); the `shipper`'s counters go to the tessera admin metrics.
pub async fn run(
    args: DevArgs,
    logging_listeners: Listeners,
    shipper: Option<Shipper>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-listen)", args.admin_listen))?;
    let admin_addr = admin.local_addr()?;

    let tessera = Service::new("tessera", HttpSettings::default());
    if let Some(shipper) = &shipper {
        shipper.register_metrics(tessera.metrics());
    }
    let mut tasks = tokio::task::JoinSet::new();
    let gateway_listeners = Listeners::bind_addrs(args.listen, args.gateway_admin_listen)
        .await
        .context("gateway (--listen / --gateway-admin-listen)")?;
    let issuer = format!("http://{}", gateway_listeners.public_addr()?);
    let (identity, readiness, serve, identity_pool) =
        start_identity(&args, &issuer, &shutdown).await?;
    let identity_readiness = readiness.clone();
    add_readiness(tessera.readiness(), identity.name, readiness);
    tasks.spawn(serve);
    // One in-process bus for every service: each relays its own outbox into it.
    let bus = InProcessBus::new();
    let (profile, readiness, serve) =
        start_profile(&args, &issuer, identity.public, &bus, &shutdown).await?;
    add_readiness(tessera.readiness(), profile.name, readiness);
    tasks.spawn(serve);
    let (notification, readiness, serve) = start_notification(
        &args,
        &issuer,
        identity.public,
        profile.public,
        &bus,
        &shutdown,
    )
    .await?;
    add_readiness(tessera.readiness(), notification.name, readiness);
    tasks.spawn(serve);
    let (logging, readiness, serve) = start_logging(&args, logging_listeners, &bus, &shutdown)?;
    let logging_readiness = readiness.clone();
    add_readiness(tessera.readiness(), logging.name, readiness);
    tasks.spawn(serve);
    // Every consumer has subscribed: deliver what the outboxes hold.
    bus.start();
    relay_identity(
        identity_pool,
        [identity_readiness, logging_readiness],
        &bus,
        &shutdown,
    );
    let upstreams = Upstreams {
        identity: identity.public,
        profile: profile.public,
        notification: notification.public,
        logging: logging.public,
    };
    let (gateway, readiness, serve) =
        start_gateway(&args, &issuer, &upstreams, gateway_listeners, &shutdown).await?;
    add_readiness(tessera.readiness(), gateway.name, readiness);
    tasks.spawn(serve);

    print_summary(
        &args,
        admin_addr,
        &[gateway, identity, profile, notification, logging],
    );
    let stop = shutdown.clone();
    let router = tessera.admin_router();
    tasks.spawn(async move {
        if let Err(error) = axum::serve(admin, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        {
            tracing::error!(%error, "admin listener failed");
        }
    });
    while tasks.join_next().await.is_some() {}
    tracing::info!("tessera stopped");
    Ok(())
}

/// The all-in-one is ready when every service in it is.
fn add_readiness(all: &Readiness, name: &'static str, service: Readiness) {
    all.add(name, move || {
        let service = service.clone();
        async move {
            let report = service.report().await;
            if report.ready {
                Ok(())
            } else {
                let failing: Vec<String> = report
                    .checks
                    .into_iter()
                    .filter(|(_, c)| !c.ok)
                    .map(|(n, _)| n)
                    .collect();
                Err(format!("not ready: {}", failing.join(", ")))
            }
        }
    });
}

type Serve = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Identity relays its outbox (audit records, `user.registered`) only to NATS; here its
/// rows go to the in-process bus, so logging's audit chain gets signups and logins. The
/// relay starts once identity (its migrations have run) and logging (its audit consumer
/// has a migrated database) are both ready: before that every delivery would fail against
/// logging's missing tables and be retried with a warning each time.
fn relay_identity(
    pool: service_kit::Pool,
    ready_first: [Readiness; 2],
    bus: &InProcessBus,
    shutdown: &CancellationToken,
) {
    let relay = tessera_events::Relay::new(pool, Bus::InProcess(bus.clone()).sink());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        for readiness in &ready_first {
            while !readiness.report().await.ready {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            }
        }
        relay.spawn(stop);
    });
}

async fn start_identity(
    args: &DevArgs,
    issuer: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Running, Readiness, Serve, service_kit::Pool)> {
    let listeners = Listeners::bind_addrs(args.identity_listen, args.identity_admin_listen)
        .await
        .context("identity (--identity-listen / --identity-admin-listen)")?;
    let public = listeners.public_addr()?;
    let admin = listeners.admin_addr()?;
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
    let config = tessera_identity::config::Cli::try_parse_from(identity_args)
        .map_err(|e| anyhow::anyhow!("identity configuration: {}", e.render()))?
        .config;
    let identity = tessera_identity::build(&config, tessera_identity::Runtime::default(), shutdown)
        .context("identity cannot start")?;
    let readiness = identity.service.readiness().clone();
    let pool = identity.state.pool.clone();
    let serve = Box::pin(identity.service.serve(listeners, shutdown.clone()));
    Ok((
        Running {
            name: "identity",
            public,
            admin,
        },
        readiness,
        serve,
        pool,
    ))
}

/// Where the gateway forwards to.
struct Upstreams {
    identity: SocketAddr,
    profile: SocketAddr,
    notification: SocketAddr,
    logging: SocketAddr,
}

async fn start_gateway(
    args: &DevArgs,
    issuer: &str,
    upstreams: &Upstreams,
    listeners: Listeners,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Running, Readiness, Serve)> {
    let routes = args.data_dir.join("gateway-routes.yaml");
    let identity = upstreams.identity;
    std::fs::write(&routes, dev_routes(upstreams))
        .with_context(|| format!("cannot write {}", routes.display()))?;
    let gateway_args = [
        "tessera-gateway".to_owned(),
        "--routes-file".to_owned(),
        routes.display().to_string(),
        "--jwks-url".to_owned(),
        format!("http://{identity}/.well-known/jwks.json"),
        "--issuer".to_owned(),
        issuer.to_owned(),
    ];
    let config = tessera_gateway::config::Config::try_parse_from(gateway_args)
        .map_err(|e| anyhow::anyhow!("gateway configuration: {}", e.render()))?;
    let built = tessera_gateway::build(
        &config,
        std::sync::Arc::new(service_kit::SystemClock),
        shutdown,
    )
    .await
    .context("the gateway cannot start")?;
    let (public, admin) = (listeners.public_addr()?, listeners.admin_addr()?);
    let readiness = built.service.readiness().clone();
    let serve = Box::pin(built.service.serve(listeners, shutdown.clone()));
    Ok((
        Running {
            name: "gateway",
            public,
            admin,
        },
        readiness,
        serve,
    ))
}

/// Routes of the all-in-one gateway: identity's API and discovery, profiles and
/// notifications (each service authenticates its own endpoints; the gateway adds a login
/// rate limit), and `/logging/` for admins only, as the operator writes it: logging runs
/// with auth disabled here, so the gateway's role check is its only guard.
fn dev_routes(upstreams: &Upstreams) -> String {
    let login_limit = "    rate_limit: { name: login, requests: 10, period_secs: 60, burst: 10 }\n";
    let mut yaml = String::from(
        "# Written by `tessera dev` at every start; edits are replaced.\nversion: 1\nroutes:\n",
    );
    let (identity, profile, notification) = (
        upstreams.identity,
        upstreams.profile,
        upstreams.notification,
    );
    for (name, prefix, upstream, limit) in [
        ("discovery", "/.well-known/", identity, ""),
        ("oauth", "/oauth2/", identity, ""),
        ("signup", "/v1/signup", identity, ""),
        ("login", "/v1/login", identity, login_limit),
        ("logout", "/v1/logout", identity, ""),
        ("me", "/v1/me", identity, ""),
        ("identity-admin", "/v1/admin/", identity, ""),
        ("profiles", "/v1/profiles", profile, ""),
        ("notifications", "/v1/notifications", notification, ""),
    ] {
        // Writing into a String cannot fail.
        let _ = write!(
            yaml,
            "  - name: {name}\n    match: {{ prefix: {prefix} }}\n    upstreams: [http://{upstream}]\n    auth: public\n{limit}"
        );
    }
    let _ = write!(
        yaml,
        "  - name: logging\n    match: {{ prefix: /logging/ }}\n    rewrite_prefix: /\n    upstreams: [http://{}]\n    auth: {{ roles: [admin] }}\n",
        upstreams.logging
    );
    yaml
}

/// The client id notification uses at identity in the all-in-one process.
const NOTIFICATION_CLIENT: &str = "notification";

/// Writes identity's client registry with notification's client (role `service`; its
/// secret and the hashing pepper are generated once under `secrets/`); returns its path.
fn write_client_registry(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let pepper = secret_file(&data_dir.join("secrets/identity-client-pepper.key"))?;
    let pepper: [u8; 32] = STANDARD
        .decode(pepper)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("secrets/identity-client-pepper.key is not 32 bytes of base64")?;
    let secret = secret_file(&data_dir.join("secrets/notification-client.secret"))?;
    let hash = tessera_identity::secrets::SecretHasher::new(&pepper).hash(&secret);
    let registry = serde_json::json!({ "clients": [{
        "client_id": NOTIFICATION_CLIENT,
        "secret_hash": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash),
        "roles": ["service"],
    }]});
    let path = data_dir.join("clients.json");
    std::fs::write(&path, registry.to_string())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The in-process bus stands in for NATS; the flag is required by the standalone binaries
/// and never dialled here.
const UNUSED_NATS_URL: &str = "nats://127.0.0.1:4222";

async fn start_profile(
    args: &DevArgs,
    issuer: &str,
    identity: SocketAddr,
    bus: &InProcessBus,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Running, Readiness, Serve)> {
    let listeners = Listeners::bind_addrs(args.profile_listen, args.profile_admin_listen)
        .await
        .context("profile (--profile-listen / --profile-admin-listen)")?;
    let (public, admin) = (listeners.public_addr()?, listeners.admin_addr()?);
    let config = tessera_profile::config::Config::try_parse_from([
        "tessera-profile".to_owned(),
        "--database-url".to_owned(),
        format!("sqlite:{}", args.data_dir.join("profile.db").display()),
        "--issuer".to_owned(),
        issuer.to_owned(),
        "--jwks-url".to_owned(),
        format!("http://{identity}/.well-known/jwks.json"),
        "--nats-url".to_owned(),
        UNUSED_NATS_URL.to_owned(),
    ])
    .map_err(|e| anyhow::anyhow!("profile configuration: {}", e.render()))?;
    let runtime = tessera_profile::Runtime {
        clock: std::sync::Arc::new(service_kit::SystemClock),
        bus: Bus::InProcess(bus.clone()),
    };
    let profile =
        tessera_profile::build(&config, runtime, shutdown).context("profile cannot start")?;
    let readiness = profile.service.readiness().clone();
    let serve = Box::pin(profile.service.serve(listeners, shutdown.clone()));
    let running = Running {
        name: "profile",
        public,
        admin,
    };
    Ok((running, readiness, serve))
}

async fn start_notification(
    args: &DevArgs,
    issuer: &str,
    identity: SocketAddr,
    profile: SocketAddr,
    bus: &InProcessBus,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Running, Readiness, Serve)> {
    let listeners = Listeners::bind_addrs(args.notification_listen, args.notification_admin_listen)
        .await
        .context("notification (--notification-listen / --notification-admin-listen)")?;
    let (public, admin) = (listeners.public_addr()?, listeners.admin_addr()?);
    let data = &args.data_dir;
    let secret = secret_file(&data.join("secrets/notification-client.secret"))?;
    let config = tessera_notification::config::Config::try_parse_from([
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
    ])
    .map_err(|e| anyhow::anyhow!("notification configuration: {}", e.render()))?;
    let runtime = tessera_notification::Runtime {
        clock: std::sync::Arc::new(service_kit::SystemClock),
        bus: Bus::InProcess(bus.clone()),
    };
    let notification = tessera_notification::build(&config, runtime, shutdown)
        .context("notification cannot start")?;
    let readiness = notification.service.readiness().clone();
    let serve = Box::pin(notification.service.serve(listeners, shutdown.clone()));
    let running = Running {
        name: "notification",
        public,
        admin,
    };
    Ok((running, readiness, serve))
}

fn start_logging(
    args: &DevArgs,
    listeners: Listeners,
    bus: &InProcessBus,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Running, Readiness, Serve)> {
    let (public, admin) = (listeners.public_addr()?, listeners.admin_addr()?);
    let config = tessera_logging::config::Config::try_parse_from([
        "tessera-logging".to_owned(),
        "--database-url".to_owned(),
        format!("sqlite:{}", args.data_dir.join("logging.db").display()),
        // One process on loopback: the gateway's admin route is the guard.
        "--insecure-disable-auth".to_owned(),
    ])
    .map_err(|e| anyhow::anyhow!("logging configuration: {}", e.render()))?;
    let runtime = tessera_logging::Runtime {
        clock: std::sync::Arc::new(service_kit::SystemClock),
        // Subscribed now, before the bus starts delivering.
        bus: Some(Bus::InProcess(bus.clone())),
    };
    let logging =
        tessera_logging::build(&config, runtime, shutdown).context("logging cannot start")?;
    let readiness = logging.service.readiness().clone();
    let serve = Box::pin(logging.service.serve(listeners, shutdown.clone()));
    let running = Running {
        name: "logging",
        public,
        admin,
    };
    Ok((running, readiness, serve))
}

/// The base64 of a 32-byte random secret kept in `path` (created with mode 0600 on first
/// use), so restarts keep decrypting what earlier runs stored.
fn secret_file(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    let encoded = STANDARD.encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, encoded.as_bytes())?;
    Ok(encoded)
}

#[allow(clippy::print_stdout, reason = "the summary is the command's output")]
fn print_summary(args: &DevArgs, admin: SocketAddr, running: &[Running]) {
    println!("Tessera dev — data in {}", args.data_dir.display());
    println!("  {:<14} {:<28} admin", "component", "public");
    println!("  {:<14} {:<28} http://{admin}", "tessera", "-");
    for service in running {
        println!(
            "  {:<14} {:<28} http://{}",
            service.name,
            format!("http://{}", service.public),
            service.admin
        );
    }
    for (name, issue) in NOT_BUILT {
        println!("  {name:<14} not built yet (issue #{issue})");
    }
    if let Some(identity) = running.iter().find(|r| r.name == "identity") {
        println!(
            "Try: curl -s http://{}/.well-known/openid-configuration",
            identity.public
        );
    }
    println!("Press Ctrl-C to stop.");
}
