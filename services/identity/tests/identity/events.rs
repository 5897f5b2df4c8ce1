//! With `--nats-url`, identity's outbox is relayed to NATS JetStream by tessera-events.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::support::{Options, TestIdentity};

crate::support::on_both_backends! {
    async fn with_a_nats_url_signup_events_reach_jetstream_and_leave_the_outbox(backend: Backend) {
        let url = std::env::var("TESSERA_TEST_NATS_URL")
            .expect("TESSERA_TEST_NATS_URL: a NATS server with JetStream (tools/services up)");
        let client = tessera_events::async_nats::connect(url.as_str()).await.expect("connect to NATS");
        let mut registered = client
            .subscribe("tessera.events.identity.user.registered")
            .await
            .expect("subscribe");
        let app = TestIdentity::start(Options {
            backend,
            args: &["--nats-url", &url],
            ..Options::default()
        })
        .await;
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let user: Value = app.signup(&email).await.json().await.expect("json");

        // Other tests sign up users too: wait for this one's event.
        let event = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let message = registered.next().await.expect("subscription open");
                let event: Value = serde_json::from_slice(&message.payload).expect("json");
                if event["data"]["email"] == email.as_str() {
                    let msg_id = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.as_str().to_owned());
                    return (event, msg_id);
                }
            }
        })
        .await
        .expect("user.registered published within 20 s");
        let (event, msg_id) = event;
        assert_eq!(event["type"], "dev.tessera.identity.user.registered.v1");
        assert_eq!(event["data"]["user_id"], user["id"]);
        assert_eq!(msg_id.as_deref(), event["id"].as_str(), "Nats-Msg-Id is the event id");
        // Marked sent: nothing of this user waits in the outbox any more.
        testkit::eventually(Duration::from_secs(10), "the outbox drained", || {
            let app = &app;
            async move { app.outbox().await.is_empty().then_some(()) }
        })
        .await;
        let ready = app.http.get(format!("{}/readyz", app.admin)).send().await.expect("readyz");
        assert_eq!(ready.status(), reqwest::StatusCode::OK);
        let metrics = app.http.get(format!("{}/metrics", app.admin)).send().await.expect("metrics");
        let text = metrics.text().await.expect("text");
        assert!(text.contains("tessera_events_relayed_total"), "{text}");
    }
}
