//! The state shared by profile's handlers.

use std::sync::Arc;

use axum::extract::FromRef;
use service_kit::{Clock, Pool};
use tessera_auth::Verifier;
use tessera_events::RelayHandle;

/// Everything a handler may use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: Pool,
    pub verifier: Arc<Verifier>,
    pub clock: Arc<dyn Clock>,
    /// Poked after a commit that wrote an event, so it is published at once.
    pub relay: RelayHandle,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}
