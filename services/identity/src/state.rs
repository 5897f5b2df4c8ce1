//! The state shared by identity's handlers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use service_kit::{Clock, Pool};
use tessera_auth::Verifier;

use crate::audit::AuditLog;
use crate::clients::ClientRegistry;
use crate::keys::KeyManager;
use crate::password::PasswordHashing;
use crate::throttle::LoginThrottle;
use crate::tokens::TokenIssuer;

/// Settings handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub refresh_ttl: Duration,
    pub refresh_grace: Duration,
    pub jwks_max_age: Duration,
    pub bootstrap_admins: HashSet<String>,
    pub trust_forwarded_for: bool,
    pub signing_algorithm: String,
}

/// Everything a handler may use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: Pool,
    pub passwords: PasswordHashing,
    pub account_throttle: Arc<LoginThrottle>,
    pub address_throttle: Arc<LoginThrottle>,
    pub keys: Arc<KeyManager>,
    pub tokens: TokenIssuer,
    pub verifier: Arc<Verifier>,
    pub clients: Arc<ClientRegistry>,
    pub audit: AuditLog,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl AppState {
    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }
}
