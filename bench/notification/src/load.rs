//! The load: profile creations (closed loop for the rate, open loop at a fixed rate for
//! the end-to-end latency) and bare SMTP sends with lettre for the server's own limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use serde_json::json;

use tessera_bench_report::Stats;

use crate::stack::Tokens;

/// A profile creation: the user's email and when the 201 arrived.
#[derive(Debug, Clone)]
pub(crate) struct Created {
    pub(crate) email: String,
    pub(crate) answered: SystemTime,
    pub(crate) took: Duration,
}

/// Creates one profile for a new user; `None` when profile did not answer 201.
async fn create(
    http: &reqwest::Client,
    profile: &str,
    tokens: &Tokens,
    run: &str,
    n: u64,
) -> anyhow::Result<Option<Created>> {
    let sub = uuid::Uuid::new_v4().to_string();
    let token = tokens.user(&sub)?;
    let email = format!("u{n}.{run}@bench.test");
    let body = json!({
        "email": email,
        "display_name": format!("Bench User {n}"),
        "locale": "en",
        "phone": null,
        "preferences": { "email": true, "sms": false, "push": false },
    });
    let started = Instant::now();
    let response = http
        .post(format!("{profile}/v1/profiles"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await;
    let took = started.elapsed();
    let answered = SystemTime::now();
    Ok(match response {
        Ok(r) if r.status() == reqwest::StatusCode::CREATED => Some(Created {
            email,
            answered,
            took,
        }),
        _ => None,
    })
}

/// Closed loop: `concurrency` clients create profiles back to back; the window after
/// `warmup` is measured. Returns the window's stats and every creation made.
pub(crate) async fn closed_loop(
    profile: &str,
    tokens: &Arc<Tokens>,
    run: &str,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<(Stats, Vec<Created>)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let counter = Arc::new(AtomicU64::new(0));
    let from = Instant::now() + warmup;
    let end = from + window;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, tokens, counter) = (http.clone(), tokens.clone(), counter.clone());
        let (profile, run) = (profile.to_owned(), run.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut created = Vec::new();
            let mut errors = 0;
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let outcome = create(&http, &profile, &tokens, &run, n).await?;
                let measured = started >= from && Instant::now() <= end;
                match outcome {
                    Some(c) => {
                        if measured {
                            samples.push(c.took);
                        }
                        created.push(c);
                    }
                    None if measured => errors += 1,
                    None => {}
                }
            }
            anyhow::Ok((samples, created, errors))
        }));
    }
    let mut samples = Vec::new();
    let mut created = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (s, c, e) = task.await.context("load task")??;
        samples.extend(s);
        created.extend(c);
        errors += e;
    }
    Ok((Stats::from_samples(samples, errors, window), created))
}

/// Open loop: one creation started every 1/`rate` s for `window`, whatever the earlier
/// ones are doing. Returns the creations (answered) and how many failed.
pub(crate) async fn open_loop(
    profile: &str,
    tokens: &Arc<Tokens>,
    run: &str,
    rate: u32,
    window: Duration,
) -> anyhow::Result<(Vec<Created>, u64)> {
    let http = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + window;
    let mut tasks = Vec::new();
    let mut n = 0;
    while Instant::now() < end {
        ticker.tick().await;
        let (http, tokens) = (http.clone(), tokens.clone());
        let (profile, run) = (profile.to_owned(), run.to_owned());
        tasks.push(tokio::spawn(async move {
            create(&http, &profile, &tokens, &run, n).await
        }));
        n += 1;
    }
    let mut created = Vec::new();
    let mut failed = 0;
    for task in tasks {
        match task.await.context("creation task")?? {
            Some(c) => created.push(c),
            None => failed += 1,
        }
    }
    Ok((created, failed))
}

/// The SMTP server alone: `connections` pooled lettre connections sending a welcome-sized
/// message back to back for `window` after `warmup`.
pub(crate) async fn smtp_limit(
    port: u16,
    connections: u32,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Stats> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .pool_config(PoolConfig::new().max_size(connections))
        .build();
    let from = Instant::now() + warmup;
    let end = from + window;
    let mut tasks = Vec::new();
    for i in 0..connections {
        let transport = transport.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0u64;
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let message = Message::builder()
                    .from("Tessera Bench <bench@tessera.test>".parse()?)
                    .to(format!("limit{i}@bench.test").parse()?)
                    .subject("Welcome to Tessera")
                    .body("Hello,\n\nwelcome to Tessera: your profile is ready.\n".repeat(8))?;
                let sent = transport.send(message).await;
                if started >= from && Instant::now() <= end {
                    match sent {
                        Ok(_) => samples.push(started.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
            }
            anyhow::Ok((samples, errors))
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (s, e) = task.await.context("smtp task")??;
        samples.extend(s);
        errors += e;
    }
    Ok(Stats::from_samples(samples, errors, window))
}
