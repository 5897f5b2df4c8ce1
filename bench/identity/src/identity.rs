//! Starting the real identity service in this process, on loopback, with the flags the
//! operator passes (client registry, pepper, standalone keys), on its own Tokio runtime
//! so that it and the load generator compete for the cores as two processes would.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Parser as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use service_kit::{CancellationToken, Listeners};
use sqlx::Connection as _;
use tessera_identity::config::Cli;
use tessera_identity::secrets::SecretHasher;
use tessera_identity::{Runtime, build};

use crate::load;

/// Bench-only key material: the keyset sealing key and the client-secret pepper.
const SEAL_KEY: [u8; 32] = [42; 32];
const PEPPER: [u8; 32] = [7; 32];
/// The service client every `client_credentials` request authenticates as.
pub(crate) const CLIENT_ID: &str = "billing";
pub(crate) const CLIENT_SECRET: &str = "tsc_bench-5Jq0rW1m3yKX8v2pTz7LcA9eHn4sUd6f";
/// The password of every benchmark user (meets the policy: long, not common).
pub(crate) const PASSWORD: &str = "a perfectly fine bench passphrase";
/// How long identity may take to become ready (migrations, first key).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where identity keeps its data in a run.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database created on this PostgreSQL server (admin URL).
    Postgres(String),
}

impl Backend {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        }
    }
}

/// Identity serving on loopback; [`Running::stop`] shuts it down.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) public: SocketAddr,
    pub(crate) admin: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
    database_url: String,
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

/// A client registry with the benchmark client, in the operator's format.
fn registry() -> String {
    let hash = URL_SAFE_NO_PAD.encode(SecretHasher::new(&PEPPER).hash(CLIENT_SECRET));
    serde_json::json!({ "clients": [
        { "client_id": CLIENT_ID, "secret_hash": hash, "roles": ["service"] }
    ] })
    .to_string()
}

/// Starts identity with `threads` runtime workers and waits until `/readyz` answers 200.
pub(crate) async fn start(backend: &Backend, threads: usize) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let registry_path = dir.path().join("clients.json");
    std::fs::write(&registry_path, registry()).context("write client registry")?;
    let (database_url, postgres) = match backend {
        Backend::Sqlite => (
            format!("sqlite:{}", dir.path().join("identity.db").display()),
            None,
        ),
        Backend::Postgres(admin_url) => {
            let name = format!("bench_identity_{}", uuid::Uuid::new_v4().simple());
            create_database(admin_url, &name).await?;
            (
                testkit::database_url_with_name(admin_url, &name),
                Some((admin_url.clone(), name)),
            )
        }
    };
    let config = config(&database_url, &registry_path)?;
    let database_url_kept = database_url.clone();
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = mpsc::channel();
    let stop = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("identity".to_owned())
        .spawn(move || serve(&config, threads, &stop, &ready_tx))
        .context("spawn identity thread")?;
    let addrs = tokio::task::spawn_blocking(move || ready_rx.recv())
        .await
        .context("identity start")?;
    let (public, admin) = match addrs {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(error)) => bail!("identity did not start: {error}"),
        Err(_) => bail!("identity thread ended before serving"),
    };
    let running = Running {
        public,
        admin,
        shutdown,
        thread: Some(thread),
        database_url: database_url_kept,
        postgres,
        _dir: dir,
    };
    running.wait_ready().await?;
    Ok(running)
}

/// Identity's configuration from the real command line: default Argon2 parameters and
/// standalone keys (EdDSA); the bench client sends `X-Forwarded-For` as the gateway does.
fn config(database_url: &str, registry: &Path) -> anyhow::Result<tessera_identity::config::Config> {
    let args = [
        "tessera-identity".to_owned(),
        "--issuer".to_owned(),
        "https://api.example.com".to_owned(),
        "--database-url".to_owned(),
        database_url.to_owned(),
        "--keyset-encryption-key".to_owned(),
        STANDARD.encode(SEAL_KEY),
        "--client-registry".to_owned(),
        registry.display().to_string(),
        "--client-secret-pepper".to_owned(),
        STANDARD.encode(PEPPER),
        "--trust-forwarded-for".to_owned(),
        "--drain-timeout-secs".to_owned(),
        "1".to_owned(),
    ];
    Ok(Cli::try_parse_from(args).context("identity flags")?.config)
}

type Ready = Result<(SocketAddr, SocketAddr), String>;

/// The identity thread: its own runtime, serving until `shutdown`.
fn serve(
    config: &tessera_identity::config::Config,
    threads: usize,
    shutdown: &CancellationToken,
    ready: &mpsc::Sender<Ready>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("identity-worker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error.to_string()));
            return;
        }
    };
    runtime.block_on(async {
        let identity = match build(config, Runtime::default(), shutdown) {
            Ok(identity) => identity,
            Err(error) => {
                let _ = ready.send(Err(error.to_string()));
                return;
            }
        };
        let listeners = match Listeners::loopback().await {
            Ok(listeners) => listeners,
            Err(error) => {
                let _ = ready.send(Err(error.to_string()));
                return;
            }
        };
        let addrs = listeners
            .public_addr()
            .and_then(|public| Ok((public, listeners.admin_addr()?)))
            .map_err(|e| e.to_string());
        let _ = ready.send(addrs);
        identity.service.serve(listeners, shutdown.clone()).await;
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
}

impl Running {
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let request = get(self.admin, "/readyz");
            if let Ok((StatusCode::OK, _)) = load::once(self.admin, request).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("identity not ready after {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Audit records of issued tokens in identity's outbox, read from its database: the
    /// proof that every answered `client_credentials` request wrote one.
    pub(crate) async fn token_audit_records(&self) -> anyhow::Result<i64> {
        const COUNT: &str =
            "SELECT count(*) FROM outbox WHERE subject = 'tessera.audit.identity.token_issued'";
        let count = if self.postgres.is_some() {
            let mut db = sqlx::PgConnection::connect(&self.database_url).await?;
            sqlx::query_scalar(COUNT).fetch_one(&mut db).await?
        } else {
            let mut db = sqlx::SqliteConnection::connect(&self.database_url).await?;
            sqlx::query_scalar(COUNT).fetch_one(&mut db).await?
        };
        Ok(count)
    }

    /// Shuts identity down and drops its PostgreSQL database.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .context("join identity")?
                .map_err(|_| anyhow::anyhow!("identity thread panicked"))?;
        }
        if let Some((admin_url, name)) = self.postgres.take() {
            drop_database(&admin_url, &name).await?;
        }
        Ok(())
    }
}

/// A bodiless GET.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Full::default())
        .expect("static request parts are valid")
}

async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .context("connect to PostgreSQL (--postgres-url)")?;
    // `name` is generated from hex digits only, so formatting it in is safe.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .with_context(|| format!("create database {name}"))?;
    admin.close().await.ok();
    Ok(())
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("drop database {name}"))?;
    admin.close().await.ok();
    Ok(())
}
