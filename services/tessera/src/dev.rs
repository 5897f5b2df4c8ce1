//! `tessera dev`: starts every built service on loopback with embedded defaults (SQLite
//! files and generated secrets under the data directory) and reports what runs where.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Parser as _;
use service_kit::{
    CancellationToken, HttpSettings, Listeners, LogFormat, Readiness, Service, TelemetryArgs,
};

/// Services not built yet, with the issue that builds each; printed so nobody wonders.
pub const NOT_BUILT: &[(&str, u32)] = &[
    ("gateway", 4),
    ("logging", 6),
    ("notification", 5),
    ("profile", 5),
];

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
}

/// A service started in this process.
#[derive(Debug)]
struct Running {
    name: &'static str,
    public: SocketAddr,
    admin: SocketAddr,
}

/// Runs until `shutdown` fires.
pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
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
    let mut tasks = tokio::task::JoinSet::new();
    let gateway_listeners = Listeners::bind_addrs(args.listen, args.gateway_admin_listen)
        .await
        .context("gateway (--listen / --gateway-admin-listen)")?;
    let issuer = format!("http://{}", gateway_listeners.public_addr()?);
    let (identity, readiness, serve) = start_identity(&args, &issuer, &shutdown).await?;
    add_readiness(tessera.readiness(), identity.name, readiness);
    tasks.spawn(serve);
    let (gateway, readiness, serve) = start_gateway(
        &args,
        &issuer,
        identity.public,
        gateway_listeners,
        &shutdown,
    )
    .await?;
    add_readiness(tessera.readiness(), gateway.name, readiness);
    tasks.spawn(serve);

    print_summary(&args, admin_addr, &[gateway, identity]);
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

async fn start_identity(
    args: &DevArgs,
    issuer: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Running, Readiness, Serve)> {
    let listeners = Listeners::bind_addrs(args.identity_listen, args.identity_admin_listen)
        .await
        .context("identity (--identity-listen / --identity-admin-listen)")?;
    let public = listeners.public_addr()?;
    let admin = listeners.admin_addr()?;
    let seal_key = secret_file(&args.data_dir.join("secrets/identity-keyset.key"))?;
    let database = args.data_dir.join("identity.db");
    let mut identity_args = vec![
        "tessera-identity".to_owned(),
        "--issuer".to_owned(),
        issuer.to_owned(),
        "--database-url".to_owned(),
        format!("sqlite:{}", database.display()),
        "--keyset-encryption-key".to_owned(),
        seal_key,
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
    let serve = Box::pin(identity.service.serve(listeners, shutdown.clone()));
    Ok((
        Running {
            name: "identity",
            public,
            admin,
        },
        readiness,
        serve,
    ))
}

async fn start_gateway(
    args: &DevArgs,
    issuer: &str,
    identity: SocketAddr,
    listeners: Listeners,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Running, Readiness, Serve)> {
    let routes = args.data_dir.join("gateway-routes.yaml");
    std::fs::write(&routes, dev_routes(identity))
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

/// Routes of the all-in-one gateway: identity's API and discovery. Identity
/// authenticates its own endpoints; the gateway adds a login rate limit.
fn dev_routes(identity: SocketAddr) -> String {
    let login_limit = "    rate_limit: { name: login, requests: 10, period_secs: 60, burst: 10 }\n";
    let mut yaml = String::from(
        "# Written by `tessera dev` at every start; edits are replaced.\nversion: 1\nroutes:\n",
    );
    for (name, prefix, limit) in [
        ("discovery", "/.well-known/", ""),
        ("oauth", "/oauth2/", ""),
        ("signup", "/v1/signup", ""),
        ("login", "/v1/login", login_limit),
        ("logout", "/v1/logout", ""),
        ("me", "/v1/me", ""),
        ("identity-admin", "/v1/admin/", ""),
    ] {
        // Writing into a String cannot fail.
        let _ = write!(
            yaml,
            "  - name: {name}\n    match: {{ prefix: {prefix} }}\n    upstreams: [http://{identity}]\n    auth: public\n{limit}"
        );
    }
    yaml
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
