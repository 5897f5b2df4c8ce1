//! Where the end-to-end time goes: for every welcome mail of the steady window, the
//! timestamps each stage leaves behind — the profile's 201 (load generator), the event's
//! `time` (profile's transaction), JetStream's stored time (the relay's publish), the job's
//! UUIDv7 (notification's intake handler), the attempt's start and end (delivery worker,
//! after the claim and after the SMTP 250) and the SMTP server's envelope file — turned
//! into the p50/p99 of each step. All clocks are this machine's.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context as _;
use serde_json::Value;
use tessera_events::JetStreamBus;
use testkit::SmtpServer;

use crate::load::Created;

/// Unix milliseconds (fractional) of `at`.
fn ms(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Unix milliseconds (fractional) of a `time` instant.
fn odt_ms(at: time::OffsetDateTime) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "milliseconds of a recent date")]
    let ms = (at.unix_timestamp_nanos() / 1000) as f64 / 1000.0;
    ms
}

#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    answered: Option<f64>,
    event: Option<f64>,
    published: Option<f64>,
    stored: Option<f64>,
    claimed: Option<f64>,
    accepted: Option<f64>,
    recorded: Option<f64>,
}

/// A step's start and end in a mail's marks.
type Step = fn(&Marks) -> Option<(f64, f64)>;

/// The steps, each from one mark to the next.
const STEPS: [(&str, Step); 6] = [
    ("event written → 201", |m| Some((m.event?, m.answered?))),
    ("201 → in JetStream", |m| {
        Some((m.answered?, m.published?))
    }),
    ("JetStream → job stored", |m| {
        Some((m.published?, m.stored?))
    }),
    ("job stored → claimed", |m| Some((m.stored?, m.claimed?))),
    ("claimed → SMTP file written", |m| {
        Some((m.claimed?, m.accepted?))
    }),
    ("SMTP file → 250 seen", |m| {
        Some((m.accepted?, m.recorded?))
    }),
];

/// p50/p99/max of each step of the mails to `created`, one line per step.
pub(crate) async fn breakdown(
    created: &[Created],
    smtp: &SmtpServer,
    bus: &JetStreamBus,
    stream: &str,
    notification_db: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut marks: HashMap<String, Marks> = created
        .iter()
        .map(|c| {
            let marks = Marks {
                answered: Some(ms(c.answered)),
                ..Marks::default()
            };
            (c.email.clone(), marks)
        })
        .collect();
    for (to, at) in smtp.accepted() {
        if let Some(m) = marks.get_mut(&to) {
            m.accepted = Some(ms(at));
        }
    }
    mark_stream(&mut marks, bus, stream).await?;
    let url = format!("sqlite:{}?mode=ro", notification_db.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .context("notification's database")?;
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT j.address, j.id, a.started_at, a.finished_at FROM jobs j \
         JOIN attempts a ON a.job_id = j.id AND a.number = 1 WHERE j.channel = 'email'",
    )
    .fetch_all(&pool)
    .await
    .context("jobs and attempts")?;
    pool.close().await;
    for (address, job, started, finished) in rows {
        let Some(m) = marks.get_mut(&address) else {
            continue;
        };
        #[expect(clippy::cast_precision_loss, reason = "milliseconds of a recent date")]
        {
            m.stored = uuid::Uuid::parse_str(&job)
                .ok()
                .and_then(|id| id.get_timestamp())
                .map(|ts| ts.to_unix().0 as f64 * 1000.0 + f64::from(ts.to_unix().1) / 1e6);
            m.claimed = Some(started as f64);
            m.recorded = Some(finished as f64);
        }
    }
    Ok(STEPS
        .iter()
        .map(|(name, step)| {
            summary(
                name,
                marks
                    .values()
                    .filter_map(step)
                    .map(|(a, b)| b - a)
                    .collect(),
            )
        })
        .collect())
}

/// `name: p50 …, p99 …, max …` of `spans` (milliseconds).
fn summary(name: &str, mut spans: Vec<f64>) -> String {
    if spans.is_empty() {
        return format!("{name}: no samples");
    }
    spans.sort_by(f64::total_cmp);
    let at = |q: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a short vector"
        )]
        let i = ((spans.len() - 1) as f64 * q).round() as usize;
        spans[i]
    };
    format!(
        "{name}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} mails)",
        at(0.5),
        at(0.99),
        at(1.0),
        spans.len()
    )
}

/// Marks when each event was written (its `time`) and stored in JetStream.
async fn mark_stream(
    marks: &mut HashMap<String, Marks>,
    bus: &JetStreamBus,
    stream: &str,
) -> anyhow::Result<()> {
    let mut stream = bus
        .context()
        .get_stream(stream)
        .await
        .context("the benchmark's stream")?;
    let last = stream
        .info()
        .await
        .context("stream info")?
        .state
        .last_sequence;
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else {
            continue;
        };
        let Some(m) = event["data"]["email"]
            .as_str()
            .and_then(|email| marks.get_mut(email))
        else {
            continue;
        };
        m.published = Some(odt_ms(message.time));
        m.event = event["time"].as_str().and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(odt_ms)
        });
    }
    Ok(())
}
