//! Reconcile call sequences against the mocked API server: what is written, in which
//! order, and what the status says. This file holds the scenario every test drives.

mod degraded;
mod keys;
mod secrets;
mod sequence;

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use service_kit::ManualClock;
use tessera_operator::Platform;
use tessera_operator::controller::{self, Context};
use tessera_operator::metrics::OperatorMetrics;
use time::macros::datetime;

use crate::apiserver::{ApiServer, Call};

/// What each test drives: a mocked API server holding one platform, and a reconcile
/// context on a manual clock.
struct Scenario {
    server: ApiServer,
    cx: Arc<Context>,
    clock: ManualClock,
}

impl Scenario {
    /// `platform` stored in the API server; Secrets named in `existing` exist with a
    /// `url` key.
    fn new(platform: &Platform, existing: &[&str]) -> Self {
        let (server, client) = ApiServer::start();
        server.put("platforms", serde_json::to_value(platform).unwrap());
        for name in existing {
            server.put(
                "secrets",
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": name, "namespace": "tessera"},
                       "data": {"url": "cG9zdGdyZXM6Ly94", "tls.crt": "eA=="}}),
            );
        }
        let clock = ManualClock::new(datetime!(2026-11-25 12:00 UTC));
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "tessera-operator".into(),
                instance: None,
            },
        );
        let cx = Arc::new(Context::new(
            client,
            recorder,
            OperatorMetrics::default(),
            Arc::new(clock.clone()),
        ));
        Self { server, cx, clock }
    }

    /// The platform as currently stored (with the status the operator wrote).
    fn platform(&self) -> Platform {
        serde_json::from_value(self.server.get("platforms", "demo").unwrap()).unwrap()
    }

    async fn reconcile(
        &self,
    ) -> (
        Result<kube::runtime::controller::Action, controller::Error>,
        Vec<Call>,
    ) {
        self.reconcile_with(self.platform()).await
    }

    /// A reconcile of `platform` as the controller's cache holds it (possibly older than
    /// what the API server stores).
    async fn reconcile_with(
        &self,
        platform: Platform,
    ) -> (
        Result<kube::runtime::controller::Action, controller::Error>,
        Vec<Call>,
    ) {
        let result = controller::reconcile(Arc::new(platform), self.cx.clone()).await;
        (result, self.server.take_calls())
    }

    fn status(&self) -> Value {
        self.server.get("platforms", "demo").unwrap()["status"].clone()
    }

    fn condition(&self, type_: &str) -> Value {
        self.status()["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

fn writes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.is_write())
        .map(Call::describe)
        .collect()
}

fn position(calls: &[Call], described: &str) -> usize {
    calls
        .iter()
        .position(|c| c.describe() == described)
        .unwrap_or_else(|| panic!("no call {described}: {:?}", writes(calls)))
}

/// The fixture's references: identity's Postgres URL, SMTP, TLS.
const REFERENCED: [&str; 3] = ["identity-db", "smtp", "api-tls"];
