//! The end-to-end rows: profile and notification on SQLite with a fresh SMTP server, the
//! steady rate's latency (with where it goes, step by step) and a backlog's delivery
//! rate beside the SMTP server's limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use service_kit::CancellationToken;
use tessera_bench_report::{Row, Stats, Table};
use testkit::SmtpServer;

use crate::cpu::Cpu;
use crate::load::Created;
use crate::stack::{NotificationSetup, Tokens};
use crate::{Args, GOAL_P99, GOAL_SHARE, load, mail_dir, stack, stages};

/// What the end-to-end measurements share with the rest of the run.
pub(crate) struct Ctx<'a> {
    pub(crate) jwks: &'a str,
    pub(crate) identity: &'a str,
    pub(crate) tokens: &'a Arc<Tokens>,
    pub(crate) dir: &'a std::path::Path,
    pub(crate) shutdown: &'a CancellationToken,
    pub(crate) run_id: &'a str,
}

/// Profile and notification on SQLite with a fresh SMTP server: the steady rate's
/// end-to-end latency, then a backlog's delivery rate beside `limit`. Adds their rows
/// and returns the goal verdicts.
pub(crate) async fn end_to_end(
    args: &Args,
    ctx: &Ctx<'_>,
    limit: &Stats,
    table: &mut Table,
) -> anyhow::Result<Vec<String>> {
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

    let (already, counted_before) = (smtp.count(), Counted::scrape(&admin).await?);
    let (burst, cpu) = backlog(args, ctx, &profile, &smtp, smtp_dir.path()).await?;
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
    Ok(vec![p99_goal, share_goal, steps, counted, cpu])
}

/// Creates the backlog (closed loop for `--backlog-secs`) and waits for its mails;
/// returns the creations and the note on the CPU they took.
async fn backlog(
    args: &Args,
    ctx: &Ctx<'_>,
    profile: &str,
    smtp: &SmtpServer,
    smtp_dir: &std::path::Path,
) -> anyhow::Result<(Vec<Created>, String)> {
    eprintln!(
        "backlog: creating profiles as fast as possible for {}s …",
        args.backlog_secs
    );
    let already = smtp.count();
    let start = Cpu::now(smtp_dir);
    let (_, burst) = load::closed_loop(
        profile,
        ctx.tokens,
        "burst",
        usize::try_from(args.concurrency)?,
        Duration::ZERO,
        Duration::from_secs(args.backlog_secs),
    )
    .await?;
    let (created, sent) = (Cpu::now(smtp_dir), smtp.count() - already);
    // The CPU is read before `delivered` reads every envelope file.
    arrived(smtp, already + burst.len()).await;
    let cpu = Cpu::now(smtp_dir).note(&start, &created, burst.len(), sent);
    Ok((burst, cpu))
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
             each); with the intake's insert (one transaction of three statements: begin, \
             the inserts, commit) and the attempt's record (two statements, each its own \
             transaction): {:.2} SQLite write transactions and {:.2} statements per mail",
            job + none + database + 3.0,
            job + none + database + 5.0
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

/// Waits (up to 60 s, stopping early when nothing new arrives for 10 s) until the server
/// holds `want` messages.
async fn arrived(smtp: &SmtpServer, want: usize) {
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
}

/// Waits (see `arrived`) for the welcome mails of `created`, skipping the first `skip` accepted messages' recipients; returns
/// the end-to-end stats (window: first to last acceptance) and how many never arrived.
async fn delivered(
    smtp: &SmtpServer,
    created: &[Created],
    failed: u64,
    skip: usize,
) -> anyhow::Result<(Stats, u64)> {
    arrived(smtp, skip + created.len()).await;
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
