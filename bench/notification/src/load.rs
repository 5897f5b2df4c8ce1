//! The load: profile creations (closed loop for the rate, open loop at a fixed rate for
//! the end-to-end latency) and bare SMTP sends with notification's SMTP channel for the
//! server's own limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use serde_json::json;
use tessera_notification::channel::smtp::{SmtpChannel, SmtpSettings, SmtpTls};
use tessera_notification::channel::{Channel as _, Outgoing};

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

/// Notification's SMTP channel (the client the service sends with) to the server on
/// `port`, keeping up to `connections` connections.
fn smtp_channel(port: u16, connections: u32) -> anyhow::Result<Arc<SmtpChannel>> {
    let channel = SmtpChannel::new(&SmtpSettings {
        url: None,
        host: "127.0.0.1".to_owned(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "Tessera Bench <bench@tessera.test>".parse()?,
        timeout: Duration::from_secs(10),
        pool_size: connections,
    })
    .map_err(anyhow::Error::msg)?;
    Ok(Arc::new(channel))
}

/// A welcome-sized message to `to`.
fn welcome(n: u64, to: String) -> Outgoing {
    Outgoing {
        job_id: format!("{}", uuid::Uuid::now_v7()),
        to,
        subject: Some(format!("Welcome to Tessera {n}")),
        body: "Hello,\n\nwelcome to Tessera: your profile is ready.\n".repeat(8),
    }
}

/// The SMTP server alone: `connections` clients sending a welcome-sized message back to
/// back through notification's SMTP channel for `window` after `warmup`.
pub(crate) async fn smtp_limit(
    port: u16,
    connections: u32,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Stats> {
    let channel = smtp_channel(port, connections)?;
    let from = Instant::now() + warmup;
    let end = from + window;
    let mut tasks = Vec::new();
    for i in 0..connections {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0u64;
            let mut n = 0;
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                n += 1;
                let sent = channel
                    .send(&welcome(n, format!("limit{i}@bench.test")))
                    .await;
                if started >= from && Instant::now() <= end {
                    match sent {
                        Ok(()) => samples.push(started.elapsed()),
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

/// The SMTP server alone at the steady rate: one welcome-sized message started every
/// 1/`rate` s for `window` through notification's SMTP channel keeping `connections`
/// connections; latency is the whole send. The floor under the end-to-end row, which
/// ends with the same send.
pub(crate) async fn smtp_steady(
    port: u16,
    connections: u32,
    rate: u32,
    window: Duration,
) -> anyhow::Result<Stats> {
    let channel = smtp_channel(port, connections)?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + window;
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while Instant::now() < end {
        ticker.tick().await;
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let sent = channel
                .send(&welcome(n, format!("steady{n}@bench.test")))
                .await;
            sent.ok().map(|()| started.elapsed())
        }));
        n += 1;
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for task in tasks {
        match task.await.context("smtp task")? {
            Some(took) => samples.push(took),
            None => errors += 1,
        }
    }
    Ok(Stats::from_samples(samples, errors, window))
}
