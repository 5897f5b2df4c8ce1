//! Retention: debug records go after the debug retention, everything else after the
//! general one (on PostgreSQL whole daily partitions are dropped); newer records stay.

use std::sync::Arc;

use tessera_logging::record::NewRecord;

use crate::support::{TestLogging, on_both_backends};

const DAY: i64 = 86_400 * 1_000_000_000;

fn aged(body: &str, severity: i32, age_days: i64, now: i64) -> NewRecord {
    NewRecord {
        time_unix_nano: now - age_days * DAY,
        observed_time_unix_nano: now - age_days * DAY,
        service: "aged".into(),
        severity_number: severity,
        severity_text: String::new(),
        body: body.into(),
        trace_id: None,
        span_id: None,
        request_id: None,
        attributes_json: "{}".to_owned(),
        resource_json: Arc::from("{}"),
    }
}

on_both_backends! {
    async fn old_records_expire_by_severity_and_age(backend: Backend) {
        // The service's own retention pass runs at start; with ten years it removes
        // nothing, so only the explicit `expire` below decides (it raced the insert of
        // the 40-day-old record before: its partition was dropped under it).
        let app = TestLogging::start(
            backend,
            &["--retention-days", "3650", "--retention-debug-days", "3650"],
        )
        .await;
        let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).expect("fits");
        let records = [
            aged("debug, 1 day", 5, 1, now),
            aged("debug, 5 days", 5, 5, now),
            aged("info, 5 days", 9, 5, now),
            aged("error, 40 days", 17, 40, now),
        ];
        // Straight into the store: ingestion would clamp a 40-day-old timestamp.
        app.state.store.insert(&records).await.expect("insert");
        assert_eq!(app.bodies("service=aged").await.len(), 4);

        let removed = app.state.store.expire(now - 3 * DAY, now - 30 * DAY).await.expect("expire");
        assert!(removed >= 2, "removed {removed}");
        let mut kept = app.bodies("service=aged").await;
        kept.sort();
        assert_eq!(kept, ["debug, 1 day", "info, 5 days"]);
        // Text search no longer finds what was removed.
        assert!(app.bodies("q=40%20days").await.is_empty());
    }
}
