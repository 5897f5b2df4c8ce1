//! Text search semantics, kept for any change of the text index (a per-block index was
//! tried in session 4, see README "Text index per block"): on PostgreSQL the records
//! found are exactly those of the phrase match `to_tsvector('simple', body) @@
//! phraseto_tsquery('simple', q)` (evaluated here as the oracle) for tricky bodies
//! buried under newer records; rare words in old records page newest first across many
//! batches; a record far in time from the rest of its batch is found.

use std::sync::Arc;

use service_kit::Pool;
use tessera_logging::record::NewRecord;
use tessera_logging::store::{Cursor, Filter, Store};

use crate::support::{Backend, TestLogging, on_both_backends};

const SECOND: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SECOND;

/// More newer records than a plan that reads the newest rows first would check (the
/// block plan tried in session 4 read 1,000).
const FILLER: usize = 1_500;

fn at(body: &str, ts: i64) -> NewRecord {
    NewRecord {
        time_unix_nano: ts,
        observed_time_unix_nano: ts,
        service: "text".into(),
        severity_number: 9,
        severity_text: "INFO".into(),
        body: body.into(),
        trace_id: None,
        span_id: None,
        request_id: None,
        attributes_json: "{}".to_owned(),
        resource_json: Arc::from("{}"),
    }
}

fn now() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).expect("fits")
}

/// `FILLER` newer records that share no word with the tricky ones, in batches of 500.
async fn bury(store: &Store, after: i64) {
    let filler: Vec<NewRecord> = (0..FILLER)
        .map(|i| {
            at(
                &format!("filler line {i}"),
                after + i64::try_from(i).expect("fits"),
            )
        })
        .collect();
    for batch in filler.chunks(500) {
        store.insert(batch).await.expect("insert filler");
    }
}

async fn bodies(store: &Store, filter: &Filter) -> Vec<String> {
    let rows = store.query(filter, None, 1000).await.expect("query");
    rows.into_iter().map(|r| r.body).collect()
}

fn text(q: &str) -> Filter {
    Filter {
        text: Some(q.to_owned()),
        ..Filter::default()
    }
}

/// Bodies the PostgreSQL parser splits in unusual ways.
const TRICKY: [&str; 12] = [
    "GET https://api.example.com/v1/users?id=42&x=y took 3.2ms",
    "mail to Bob.Smith+tag@Example.ORG bounced",
    "state-of-the-art re-try failed after co-operation",
    "Ünïcode Straße ΟΔΟΣ 東京 café naïve",
    "version v1.2.3 build 2026-11-26T01:02:03Z pid=-17 ratio 0.75e-3",
    "path /var/log/tessera/app.log rotated; C:\\temp\\x.txt too",
    "UPPER lower MiXeD case Words",
    "x_y snake_case and dots.in.names and trailing.",
    "connection reset by peer while reading response",
    "user 'o''brien' said \"hello, world\" (twice) [ok] {json: 1}",
    "host db-01.internal:5432 refused; retry #3 at 10:15",
    "tabs\there\nnewline and\u{00a0}nbsp",
];

/// Queries over `TRICKY`: every lexeme PostgreSQL finds in them, phrases, case
/// changes, wrong word order, and words of no record.
async fn tricky_queries(pool: &sqlx::PgPool) -> Vec<String> {
    let mut queries: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT l FROM unnest($1::text[]) b, \
         unnest(tsvector_to_array(to_tsvector('simple', b))) l ORDER BY l",
    )
    .bind(TRICKY.to_vec())
    .fetch_all(pool)
    .await
    .expect("lexemes");
    assert!(
        queries.len() > 60,
        "the bodies have many lexemes: {queries:?}"
    );
    for extra in [
        "https://api.example.com/v1/users?id=42&x=y",
        "api.example.com",
        "Bob.Smith+tag@Example.ORG",
        "STATE-OF-THE-ART",
        "re-try failed",
        "connection reset",
        "reset connection",
        "Connection RESET by Peer",
        "straße",
        "ΟΔΟΣ",
        "café naïve",
        "hello, world",
        "o'brien",
        "db-01.internal:5432",
        "2026-11-26",
        "3.2ms",
        "-17",
        "mixed case words",
        "trailing",
        "absent",
        "filler line",
        "nbsp",
    ] {
        queries.push(extra.to_owned());
    }
    queries
}

#[tokio::test]
async fn text_search_finds_what_the_per_row_phrase_match_finds_in_old_tricky_records() {
    let app = TestLogging::on(Backend::Postgres).await;
    let Pool::Postgres(pool) = app.state.store.pool() else {
        panic!("postgres")
    };
    let start = now() - 3_600 * SECOND;
    let tricky: Vec<NewRecord> = TRICKY
        .iter()
        .enumerate()
        .map(|(i, b)| at(b, start + i64::try_from(i).expect("fits")))
        .collect();
    app.state.store.insert(&tricky).await.expect("insert");
    bury(&app.state.store, start + SECOND).await;
    let mut checked = 0;
    for q in tricky_queries(pool).await {
        let expected: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM log_records \
             WHERE to_tsvector('simple', body) @@ phraseto_tsquery('simple', $1) \
             ORDER BY ts DESC, id DESC LIMIT 1000",
        )
        .bind(&q)
        .fetch_all(pool)
        .await
        .expect("oracle");
        let found = bodies(&app.state.store, &text(&q)).await;
        assert_eq!(found, expected, "q = {q:?}");
        checked += usize::from(!expected.is_empty());
    }
    assert!(checked > 60, "most queries find something: {checked}");
}

on_both_backends! {
    /// A word in single old records among many batches, and pages of it across them,
    /// newest first without gaps or repeats.
    async fn a_rare_word_in_old_records_pages_across_many_batches(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let store = &app.state.store;
        let start = now() - 7_200 * SECOND;
        // 3,000 records in batches of 500; `needle` in every 290th.
        let records: Vec<NewRecord> = (0..3_000i64)
            .map(|i| {
                let word = if i % 290 == 0 { "needle" } else { "hay" };
                at(&format!("event {i} {word}"), start + i * SECOND)
            })
            .collect();
        for batch in records.chunks(500) {
            store.insert(batch).await.expect("insert");
        }
        bury(store, start + 3_001 * SECOND).await;
        let expected: Vec<String> = (0..3_000i64)
            .rev()
            .filter(|i| i % 290 == 0)
            .map(|i| format!("event {i} needle"))
            .collect();
        assert_eq!(expected.len(), 11);
        assert_eq!(bodies(store, &text("needle")).await, expected);
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.query(&text("needle"), cursor, 4).await.expect("page");
            paged.extend(page.iter().map(|r| r.body.clone()));
            match page.last() {
                Some(last) if page.len() == 4 => {
                    cursor = Some(Cursor { ts: last.time_unix_nano, id: last.id });
                }
                _ => break,
            }
        }
        assert_eq!(paged, expected);
        // A time range narrows it.
        let ranged = Filter {
            since: Some(start + 1_000 * SECOND),
            until: Some(start + 2_000 * SECOND),
            ..text("needle")
        };
        assert_eq!(bodies(store, &ranged).await, ["event 1740 needle", "event 1450 needle", "event 1160 needle"]);
        // A phrase across the number and the word.
        assert_eq!(bodies(store, &text("event 580 needle")).await, ["event 580 needle"]);
        assert!(bodies(store, &text("needle 580")).await.is_empty());
    }
}

#[tokio::test]
async fn a_word_in_a_record_far_in_time_from_the_rest_of_its_batch_is_found() {
    let app = TestLogging::on(Backend::Postgres).await;
    let store = &app.state.store;
    let now = now();
    // One batch: 400 records now and one two days old in the middle of it.
    let mut batch: Vec<NewRecord> = (0..400)
        .map(|i| at(&format!("recent {i}"), now - i))
        .collect();
    batch.insert(200, at("straggler from the past", now - 2 * DAY));
    store.insert(&batch).await.expect("insert");
    bury(store, now + SECOND).await;
    assert_eq!(
        bodies(store, &text("straggler")).await,
        ["straggler from the past"]
    );
    let old_only = Filter {
        until: Some(now - DAY),
        ..text("past")
    };
    assert_eq!(bodies(store, &old_only).await, ["straggler from the past"]);
    // The histogram counts it once.
    let counted = store
        .histogram(
            &Filter {
                since: Some(now - 3 * DAY),
                until: Some(now + DAY),
                ..text("straggler")
            },
            DAY,
        )
        .await
        .expect("histogram");
    assert_eq!(counted.iter().map(|b| b.count).sum::<i64>(), 1);
}
