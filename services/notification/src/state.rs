//! The state shared by notification's handlers.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::FromRef;
use service_kit::{Clock, Pool};
use tessera_auth::Verifier;
use tokio::sync::Notify;

use crate::channel::ChannelKind;
use crate::templates::Templates;

/// Everything a handler may use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: Pool,
    pub verifier: Arc<Verifier>,
    pub templates: Arc<Templates>,
    /// Channels with a configured transport.
    pub channels: Arc<HashSet<ChannelKind>>,
    pub clock: Arc<dyn Clock>,
    /// Wakes the delivery workers after jobs are stored.
    pub wake: Arc<Notify>,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}
