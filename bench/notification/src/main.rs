//! `tessera-bench-notification`: the signup notification path in one run — profiles
//! created per second through profile's API (SQLite and PostgreSQL), the end-to-end
//! latency from a profile's 201 to the SMTP server accepting its welcome mail at a steady
//! rate, and notification's email delivery beside the SMTP server's own limit. Prints one
//! Markdown table with the date, the machine and its load average.

mod load;
mod stack;
mod stages;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Parser;
use service_kit::CancellationToken;
use tessera_bench_report::{Row, Stats, Table};
use testkit::SmtpServer;

use crate::load::Created;
use crate::stack::{NotificationSetup, Tokens};

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

/// What the end-to-end measurements share with the rest of the run.
struct Ctx<'a> {
    jwks: &'a str,
    identity: &'a str,
    tokens: &'a Arc<Tokens>,
    dir: &'a std::path::Path,
    shutdown: &'a CancellationToken,
    run_id: &'a str,
}

/// Profile and notification on SQLite with a fresh SMTP server: the steady rate's
/// end-to-end latency, then a backlog's delivery rate beside `limit`. Adds their rows
/// and returns the goal verdicts.
async fn end_to_end(
    args: &Args,
    ctx: &Ctx<'_>,
    limit: &Stats,
    table: &mut Table,
) -> anyhow::Result<Vec<String>> {
    let concurrency = usize::try_from(args.concurrency)?;
    eprintln!("starting profile and notification for the end-to-end run …");
    let smtp_dir = mail_dir()?;
    let smtp = SmtpServer::start_in(smtp_dir.path()).await;
    let e2e_id = format!("{}e2e", &ctx.run_id[..12]);
    let profile = stack::start_profile(
        format!("sqlite:{}", ctx.dir.join("profile-e2e.db").display()),
        ctx.jwks,
        &args.nats_url,
        &e2e_id,
        ctx.shutdown,
    )
    .await?;
    let admin = stack::start_notification(
        &NotificationSetup {
            database_url: format!("sqlite:{}", ctx.dir.join("notification.db").display()),
            jwks: ctx.jwks,
            identity: ctx.identity,
            profile: &profile,
            nats_url: &args.nats_url,
            nats_id: &e2e_id,
            smtp_port: smtp.port(),
            workers: args.delivery_workers,
        },
        ctx.shutdown,
    )
    .await?;

    let steady = Duration::from_secs(args.steady_secs);
    eprintln!(
        "steady {} profiles/s for {}s …",
        args.rate, args.steady_secs
    );
    let (created, failed) =
        load::open_loop(&profile, ctx.tokens, "steady", args.rate, steady).await?;
    let (steady_stats, missing) = delivered(&smtp, &created, failed, 0).await?;
    let steps = steady_steps(args, ctx, &smtp, &created, &e2e_id).await?;
    let p99_holds = missing == 0 && failed == 0 && steady_stats.p99 < GOAL_P99;
    table.row(Row::new(
        format!("welcome mail end to end at {}/s (SQLite)", args.rate),
        steady_stats,
        format!("goal p99 < {} ms", GOAL_P99.as_millis()),
    ));

    eprintln!(
        "backlog: creating profiles as fast as possible for {}s …",
        args.backlog_secs
    );
    let (already, counted_before) = (smtp.count(), Counted::scrape(&admin).await?);
    let (_, burst) = load::closed_loop(
        &profile,
        ctx.tokens,
        "burst",
        concurrency,
        Duration::ZERO,
        Duration::from_secs(args.backlog_secs),
    )
    .await?;
    let (drain, drain_missing) = delivered(&smtp, &burst, 0, already).await?;
    let counted = counted_before.note_since(&admin, burst.len()).await?;
    let share = if limit.rate() > 0.0 {
        drain.rate() / limit.rate()
    } else {
        0.0
    };
    table.row(
        Row::new(
            format!(
                "delivery of a backlog of {} welcome mails ({} workers)",
                burst.len(),
                args.delivery_workers
            ),
            drain,
            format!("goal ≥ {:.0} % of the limit", GOAL_SHARE * 100.0),
        )
        .ratio_to(limit.rate()),
    );
    let p99_goal = format!(
        "goal p99 < {} ms at {}/s: {} (p99 {}, {} POSTs failed, {} mails missing)",
        GOAL_P99.as_millis(),
        args.rate,
        if p99_holds { "holds" } else { "missed" },
        tessera_bench_report::latency(steady_stats.p99),
        failed,
        missing
    );
    let share_goal = format!(
        "goal delivery ≥ {:.0} % of the SMTP limit: {} ({:.0} %: {} of {} mails/s, {} missing)",
        GOAL_SHARE * 100.0,
        if share >= GOAL_SHARE && drain_missing == 0 {
            "holds"
        } else {
            "missed"
        },
        share * 100.0,
        tessera_bench_report::rate(drain.rate()),
        tessera_bench_report::rate(limit.rate()),
        drain_missing
    );
    Ok(vec![p99_goal, share_goal, steps, counted])
}

/// Notification's claim and lease-check counters (`/metrics`), to say per backlog mail
/// how many write transactions its delivery took on SQLite's one writer.
#[derive(Debug, Default, Clone, Copy)]
struct Counted {
    claims_job: f64,
    claims_none: f64,
    checks_clock: f64,
    checks_database: f64,
}

impl Counted {
    async fn scrape(admin: &str) -> anyhow::Result<Self> {
        let text = reqwest::get(format!("{admin}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        let mut counted = Self::default();
        for line in text.lines() {
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            if line.starts_with("tessera_notification_claims_total{") {
                if line.contains("outcome=\"job\"") {
                    counted.claims_job += value;
                } else {
                    counted.claims_none += value;
                }
            } else if line.starts_with("tessera_notification_lease_checks_total{") {
                if line.contains("by=\"clock\"") {
                    counted.checks_clock += value;
                } else if line.contains("by=\"database\"") {
                    counted.checks_database += value;
                }
            }
        }
        Ok(counted)
    }

    /// The counts since these (scraped again from `admin`), as a note per mail of a
    /// backlog of `mails`.
    async fn note_since(&self, admin: &str, mails: usize) -> anyhow::Result<String> {
        let (before, now) = (self, Self::scrape(admin).await?);
        let mails = f64::from(u32::try_from(mails).unwrap_or(u32::MAX).max(1));
        let per = |now: f64, then: f64| (now - then) / mails;
        let (job, none) = (
            per(now.claims_job, before.claims_job),
            per(now.claims_none, before.claims_none),
        );
        let (clock, database) = (
            per(now.checks_clock, before.checks_clock),
            per(now.checks_database, before.checks_database),
        );
        Ok(format!(
            "backlog delivery, per mail: {job:.2} claims that found jobs and {none:.2} that \
             found none (each a write transaction), lease checks before the send {clock:.2} \
             from the claim's own lease and {database:.2} renewed in the database (a write \
             each); with the intake's insert and the attempt's record: {:.2} SQLite write \
             transactions per mail",
            job + none + database + 2.0
        ))
    }
}

/// Where the steady window's time went, step by step (see `stages`), as a note; also
/// printed.
async fn steady_steps(
    args: &Args,
    ctx: &Ctx<'_>,
    smtp: &SmtpServer,
    created: &[Created],
    e2e_id: &str,
) -> anyhow::Result<String> {
    let bus =
        tessera_events::JetStreamBus::connect(stack::nats_config(&args.nats_url, "bench", e2e_id))
            .await
            .context("the benchmark's bus")?;
    let steps = stages::breakdown(
        created,
        smtp,
        &bus,
        &format!("BENCH{e2e_id}"),
        &ctx.dir.join("notification.db"),
    )
    .await?;
    for step in &steps {
        eprintln!("  {step}");
    }
    Ok(format!(
        "where the steady window's time goes (per mail, p50/p99/max of each step): {}",
        steps.join("; ")
    ))
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

/// Waits (up to 60 s, stopping early when nothing new arrives for 10 s) for the welcome
/// mails of `created`, skipping the first `skip` accepted messages' recipients; returns
/// the end-to-end stats (window: first to last acceptance) and how many never arrived.
async fn delivered(
    smtp: &SmtpServer,
    created: &[Created],
    failed: u64,
    skip: usize,
) -> anyhow::Result<(Stats, u64)> {
    let want = skip + created.len();
    let started = std::time::Instant::now();
    let mut last = (smtp.count(), std::time::Instant::now());
    while last.0 < want && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = smtp.count();
        if now != last.0 {
            last = (now, std::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let answered: HashMap<&str, SystemTime> = created
        .iter()
        .map(|c| (c.email.as_str(), c.answered))
        .collect();
    let mut samples = Vec::new();
    let mut first: Option<SystemTime> = None;
    let mut latest: Option<SystemTime> = None;
    for (to, at) in smtp.accepted() {
        if let Some(sent) = answered.get(to.as_str()) {
            // A mail accepted before the 201 reached the client counts as zero.
            samples.push(at.duration_since(*sent).unwrap_or_default());
            first = Some(first.map_or(at, |f| f.min(at)));
            latest = Some(latest.map_or(at, |l| l.max(at)));
        }
    }
    let missing = created.len() as u64 - samples.len() as u64;
    let span = match (first, latest) {
        (Some(f), Some(l)) => l.duration_since(f).unwrap_or_default(),
        _ => Duration::ZERO,
    }
    .max(Duration::from_millis(1));
    Ok((
        Stats::from_samples(samples, failed + missing, span),
        missing,
    ))
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
