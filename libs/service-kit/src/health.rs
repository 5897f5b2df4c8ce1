//! Liveness and readiness for the admin listener.
//!
//! `/healthz` answers 200 while the process runs. `/readyz` runs every registered check
//! (database reachable and migrated, bus connected, keys loaded, ...) concurrently, each
//! with a time limit, and answers 503 with the failing checks named when any fails or the
//! service is draining for shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use http::StatusCode;
use serde::Serialize;

/// A check's answer: `Err` holds a short reason shown on `/readyz` (never secrets).
pub type CheckResult = Result<(), String>;
type CheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;
type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// How long one readiness check may take before it counts as failed; kubelet probes
/// default to a 1 s timeout, so answer before that.
const CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// The set of readiness checks of one service. Cheap to clone; clones share checks.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<Vec<(String, Check)>>>,
    draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        let names: Vec<&str> = checks.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Readiness")
            .field("checks", &names)
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Registers a named check.
    pub fn add<F, Fut>(&self, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.to_owned(), check));
    }

    /// Registers a named check that passes while `ready()` is true and otherwise fails
    /// with `reason` (for state the process already holds, e.g. "keys loaded").
    pub fn add_flag<F>(&self, name: &str, reason: &'static str, ready: F)
    where
        F: Fn() -> bool + Send + Sync + 'static,
    {
        self.add(name, move || {
            let result = if ready() {
                Ok(())
            } else {
                Err(reason.to_owned())
            };
            std::future::ready(result)
        });
    }

    /// Marks the service as shutting down: `/readyz` fails from now on so load balancers
    /// stop sending new requests while in-flight ones drain.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Runs every check and reports the outcome.
    pub async fn report(&self) -> ReadinessReport {
        let checks: Vec<(String, Check)> = self
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let runs = checks.into_iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => CheckOutcome {
                    ok: true,
                    error: None,
                },
                Ok(Err(error)) => CheckOutcome {
                    ok: false,
                    error: Some(error),
                },
                Err(_) => CheckOutcome {
                    ok: false,
                    error: Some("timed out".to_owned()),
                },
            };
            (name, outcome)
        });
        let checks: BTreeMap<String, CheckOutcome> = join_all(runs).await.into_iter().collect();
        let draining = self.draining.load(Ordering::SeqCst);
        let ready = !draining && checks.values().all(|c| c.ok);
        ReadinessReport {
            ready,
            draining,
            checks,
        }
    }
}

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    /// Whether the service should receive traffic.
    pub ready: bool,
    /// Whether shutdown has begun.
    pub draining: bool,
    /// Each check by name.
    pub checks: BTreeMap<String, CheckOutcome>,
}

/// One check's outcome.
#[derive(Debug, Serialize)]
pub struct CheckOutcome {
    /// Whether it passed.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(readiness): State<Readiness>) -> Response {
    let report = readiness.report().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flag_check_fails_with_its_reason_until_the_flag_is_set() {
        let readiness = Readiness::default();
        let loaded = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&loaded);
        readiness.add_flag("keys", "no signing key loaded yet", move || {
            flag.load(Ordering::SeqCst)
        });

        let report = readiness.report().await;
        assert!(!report.ready);
        assert_eq!(
            report.checks["keys"].error.as_deref(),
            Some("no signing key loaded yet")
        );

        loaded.store(true, Ordering::SeqCst);
        let report = readiness.report().await;
        assert!(report.ready);
        assert!(report.checks["keys"].ok && report.checks["keys"].error.is_none());
    }
}
