//! The shared state of the handlers.

use std::sync::Arc;

use axum::extract::FromRef;
use service_kit::{Clock, Database};
use tessera_auth::Verifier;

use crate::audit::AuditLog;
use crate::ingest::Ingest;
use crate::otlp::Limits;
use crate::store::Store;

/// Everything a handler may need. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub database: Database,
    pub store: Store,
    pub ingest: Ingest,
    pub audit: AuditLog,
    pub limits: Limits,
    pub clock: Arc<dyn Clock>,
    pub verifier: Arc<Verifier>,
    /// `--insecure-disable-auth`: every caller is accepted (all-in-one mode only).
    pub auth_disabled: bool,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}
