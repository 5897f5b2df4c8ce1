//! `tessera-bench-notification`: the signup notification path in one run — profiles
//! created per second through profile's API (SQLite and PostgreSQL), the end-to-end
//! latency from a profile's 201 to the SMTP server accepting its welcome mail at a steady
//! rate, and notification's email delivery beside the SMTP server's own limit. Prints one
//! Markdown table with the date, the machine and its load average.

mod cpu;
mod e2e;
mod load;
mod stack;
mod stages;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use service_kit::CancellationToken;
use tessera_bench_report::{Row, Table};
use testkit::SmtpServer;

use crate::e2e::{Ctx, end_to_end};
use crate::stack::Tokens;

/// End-to-end p99 goal at the steady rate (issue #5).
const GOAL_P99: Duration = Duration::from_millis(100);
/// Delivery goal as a share of the SMTP server's measured limit (issue #5).
const GOAL_SHARE: f64 = 0.70;

/// Benchmark of profile → notification → SMTP beside the SMTP server's limit.
#[derive(Debug, Parser)]
#[command(name = "tessera-bench-notification", version)]
struct Args {
    /// NATS server with JetStream; a private stream and subject root are used per run.
    #[arg(long, env = "TESSERA_TEST_NATS_URL", value_name = "URL")]
    nats_url: String,

    /// Whether to measure profile creation on PostgreSQL too (needs
    /// `TESSERA_TEST_POSTGRES_URL`; a fresh database is created).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    postgres: bool,

    /// Length of each closed-loop window, in seconds.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=120))]
    duration_secs: u64,

    /// Concurrent clients of the closed loops (profile creation, SMTP alone).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,

    /// Steady profile creations per second for the end-to-end latency.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: u32,

    /// Length of the steady window, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=120))]
    steady_secs: u64,

    /// How long the backlog is created for (closed loop, as fast as profile answers), in
    /// seconds: about 2,000 profiles a second here.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=60))]
    backlog_secs: u64,

    /// Notification's delivery workers (its default, 32).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=256))]
    delivery_workers: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?
        .block_on(run(args))
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// Host name, CPU model and core count.
fn machine() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown host".to_owned(), |s| s.trim().to_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{host}, {cpu}, {cores} cores")
}

async fn run(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let load_before = load_average();
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .context("date")?;
    let window = Duration::from_secs(args.duration_secs);
    let warmup = Duration::from_secs(2);
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    eprintln!("starting identity and the JWKS server …");
    let identity = stack::start_identity(dir.path(), &shutdown).await?;
    let tokens = Arc::new(Tokens::new()?);
    let jwks = stack::start_jwks(&identity, &tokens, &shutdown).await?;

    let mut table = Table::new(
        "notification: profile → JetStream → notification → SMTP",
        "ops/s",
    );

    profile_rates(
        &args,
        &jwks,
        &tokens,
        dir.path(),
        &shutdown,
        &run_id,
        &mut table,
    )
    .await?;

    eprintln!("measuring the SMTP server alone …");
    let limit_dir = mail_dir()?;
    let limit_server = SmtpServer::start_in(limit_dir.path()).await;
    let limit = load::smtp_limit(limit_server.port(), args.concurrency, warmup, window).await?;
    let steady = load::smtp_steady(
        limit_server.port(),
        args.delivery_workers,
        args.rate,
        Duration::from_secs(args.duration_secs),
    )
    .await?;
    table.row(Row::new(
        format!("SMTP server alone at {}/s (open loop)", args.rate),
        steady,
        "the floor under end to end",
    ));
    drop(limit_server);
    table.row(Row::new(
        format!("SMTP server alone ({} connections)", args.concurrency),
        limit,
        "the limit",
    ));

    let ctx = Ctx {
        jwks: &jwks,
        identity: &identity,
        tokens: &tokens,
        dir: dir.path(),
        shutdown: &shutdown,
        run_id: &run_id,
    };
    let goals = end_to_end(&args, &ctx, &limit, &mut table).await?;

    let load_after = load_average();
    table.note(format!("date: {date}; machine: {}", machine()));
    table.note(format!(
        "load average (1/5/15 min) before: {load_before}, after: {load_after} — the machine \
         is shared, and every service, NATS's clients, the SMTP server and the load generator \
         share its cores"
    ));
    table.note(
        "profile rows: closed loop, latency is the POST; end-to-end rows: latency is the POST's \
         201 to the SMTP server writing the message (its envelope file's mtime), rate is mails \
         accepted per second between the first and last acceptance; errors are failed POSTs \
         plus mails that never arrived; SMTP rows send through notification's own SMTP \
         channel (TCP_NODELAY, kept connections), so the limit is the server's, not a client's; \
         the SMTP servers write their mail to tmpfs (/dev/shm) where there is one",
    );
    for note in goals {
        table.note(note);
    }
    table.print();
    Ok(())
}

/// One row per backend: profiles created per second, each profile on its own stream
/// that nobody consumes.
async fn profile_rates(
    args: &Args,
    jwks: &str,
    tokens: &Arc<Tokens>,
    dir: &std::path::Path,
    shutdown: &CancellationToken,
    run_id: &str,
    table: &mut Table,
) -> anyhow::Result<()> {
    let window = Duration::from_secs(args.duration_secs);
    let warmup = Duration::from_secs(2);
    let concurrency = usize::try_from(args.concurrency)?;
    // Profile creation rate, per backend, each on its own stream nobody consumes.
    let mut backends = vec![(
        "SQLite",
        format!("sqlite:{}", dir.join("profile-rate.db").display()),
    )];
    let postgres_set = std::env::var("TESSERA_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty());
    if args.postgres && postgres_set {
        backends.push(("PostgreSQL", testkit::fresh_postgres_database().await));
    }
    for (label, url) in backends {
        let id = format!("{}{}", &run_id[..12], label.to_ascii_lowercase());
        let database = (label == "PostgreSQL").then(|| url.clone());
        // Each profile stops after its row, so it stops touching its database.
        let stop = shutdown.child_token();
        let profile = stack::start_profile(url, jwks, &args.nats_url, &id, &stop).await?;
        eprintln!("measuring profile creation on {label} …");
        let (stats, _) = load::closed_loop(
            &profile,
            tokens,
            &format!("rate{label}"),
            concurrency,
            warmup,
            window,
        )
        .await?;
        table.row(Row::new(
            format!("POST /v1/profiles, {label}, {concurrency} clients"),
            stats,
            "201s; event published to JetStream",
        ));
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(url) = database {
            // The benchmark's database is not kept (profile's connections are forced off).
            drop_database(&url).await?;
        }
    }
    if !(args.postgres && postgres_set) {
        table.row(Row::skipped(
            "POST /v1/profiles, PostgreSQL",
            "skipped: no TESSERA_TEST_POSTGRES_URL or --postgres false",
        ));
    }

    Ok(())
}

/// A directory for an SMTP server's mail: on tmpfs (`/dev/shm`) where there is one.
/// The test server writes two files per mail; on this shared VM's ext4 the inode
/// allocator's scan past recently deleted inodes (other helpers' churn) took a third of
/// the backlog run's CPU samples (perf, session 9) and varied between the limit's fresh
/// directory and the end-to-end one, so the limit and the delivery rate measured a
/// filesystem instead of the SMTP server and notification.
fn mail_dir() -> anyhow::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    Ok(if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("tessera-bench-smtp")
            .tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    })
}

/// Drops the fresh PostgreSQL database at `url` (named by `testkit`, hex digits only).
async fn drop_database(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let name = url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .context("database name in the URL")?
        .to_owned();
    let mut admin = sqlx::PgConnection::connect(&testkit::postgres_admin_url()).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("drop database {name}"))?;
    admin.close().await.ok();
    Ok(())
}
