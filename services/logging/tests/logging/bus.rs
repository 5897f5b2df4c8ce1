//! Audit events from the bus: events published on `tessera.audit.>` (as identity's relay
//! publishes them) land in the chain once each, even when delivered twice, and the chain
//! verifies.

use std::time::Duration;

use serde_json::{Value, json};
use tessera_events::{Bus, CloudEvent, JetStreamBus, NatsConfig, OutboxMessage};

use crate::support::{Backend, TestLogging, on_both_backends};

/// A private stream and subject root on the test NATS server, so tests do not meet.
fn nats_config(service: &str, suffix: &str) -> NatsConfig {
    let url = std::env::var("TESSERA_TEST_NATS_URL")
        .expect("TESSERA_TEST_NATS_URL: these tests need NATS JetStream (run `tools/services up`)");
    let mut config = NatsConfig::new(url, service);
    config.stream = format!("LOGGING_{suffix}");
    config.subject_root = format!("t{suffix}");
    config
}

fn audit_event(action: &str, subject: &str) -> CloudEvent {
    CloudEvent {
        specversion: "1.0".into(),
        id: uuid::Uuid::now_v7().to_string(),
        source: "/tessera/identity".into(),
        type_: format!("dev.tessera.identity.audit.{action}.v1"),
        time: time::OffsetDateTime::now_utc(),
        subject: Some(subject.into()),
        datacontenttype: Some("application/json".into()),
        data: json!({ "action": action, "subject": subject, "details": {} }),
    }
}

on_both_backends! {
    async fn audit_events_published_on_the_bus_are_chained_once_and_verify(backend: Backend) {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let consumer_bus = JetStreamBus::connect(nats_config("logging", &suffix)).await.expect("bus");
        let app = TestLogging::start_with_bus(backend, &[], Some(Bus::JetStream(consumer_bus))).await;
        let publisher = Bus::JetStream(
            JetStreamBus::connect(nats_config("identity", &suffix)).await.expect("bus"),
        );
        let sink = publisher.sink();
        let signup = audit_event("signup", "user-1");
        let issued = audit_event("token_issued", "client-9");
        for (event, action) in [(&signup, "signup"), (&issued, "token_issued"), (&signup, "signup")] {
            let message = OutboxMessage::from_cloud_event(event, format!("tessera.audit.identity.{action}"));
            // The third publish repeats the first event id: JetStream may drop it as a
            // duplicate, and if it is delivered the chain must not grow.
            sink.publish(&message).await.expect("published");
        }
        let verdict: Value = testkit::eventually(Duration::from_secs(20), "two chained records", || async {
            let verdict: Value = app
                .http
                .get(app.url("/v1/audit/verify"))
                .bearer_auth(&app.admin_token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (verdict["records"] == 2).then_some(verdict)
        })
        .await;
        assert_eq!(verdict["valid"], true, "{verdict}");
        let listed: Value = app
            .http
            .get(app.url("/v1/audit/records"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let ids: Vec<&str> = listed["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["event_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(ids, [issued.id.as_str(), signup.id.as_str()]);
        assert_eq!(listed["records"][0]["type"], "dev.tessera.identity.audit.token_issued.v1");
        assert_eq!(listed["records"][0]["subject"], "client-9");
    }
}

#[tokio::test]
async fn in_the_all_in_one_mode_audit_events_on_the_in_process_bus_are_chained() {
    let bus = tessera_events::InProcessBus::new();
    let app =
        TestLogging::start_with_bus(Backend::Sqlite, &[], Some(Bus::InProcess(bus.clone()))).await;
    bus.start();
    let login = audit_event("login_succeeded", "user-3");
    Bus::InProcess(bus.clone())
        .sink()
        .publish(&OutboxMessage::from_cloud_event(
            &login,
            "tessera.audit.identity.login_succeeded".into(),
        ))
        .await
        .expect("every subscriber accepted it");
    let verdict: Value = app
        .http
        .get(app.url("/v1/audit/verify"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["records"], 1, "{verdict}");
    assert!(bus.dead_letters().is_empty());
}

#[tokio::test]
async fn an_audit_type_no_list_names_is_chained_too() {
    let bus = tessera_events::InProcessBus::new();
    let app =
        TestLogging::start_with_bus(Backend::Sqlite, &[], Some(Bus::InProcess(bus.clone()))).await;
    bus.start();
    // Neither identity nor logging knew this action when the consumer was written.
    let changed = audit_event("password_changed", "user-4");
    let other = CloudEvent {
        type_: "dev.tessera.profile.audit.profile_deleted.v1".into(),
        source: "/tessera/profile".into(),
        ..audit_event("profile_deleted", "user-5")
    };
    for (event, subject) in [
        (&changed, "tessera.audit.identity.password_changed"),
        (&other, "tessera.audit.profile.profile_deleted"),
    ] {
        Bus::InProcess(bus.clone())
            .sink()
            .publish(&OutboxMessage::from_cloud_event(event, subject.into()))
            .await
            .expect("every subscriber accepted it");
    }
    let listed: Value = app
        .http
        .get(app.url("/v1/audit/records"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let mut types: Vec<&str> = listed["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["type"].as_str().unwrap_or_default())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "dev.tessera.identity.audit.password_changed.v1",
            "dev.tessera.profile.audit.profile_deleted.v1"
        ],
        "{listed}"
    );
    assert!(bus.dead_letters().is_empty());
}
