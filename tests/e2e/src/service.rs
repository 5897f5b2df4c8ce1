//! The services the harness runs and what the `Platform` custom resource would say.

use std::time::Duration;

use tessera_keys::{Algorithm, KeyPolicy};

/// The services the harness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// tessera-identity.
    Identity,
    /// tessera-gateway.
    Gateway,
    /// tessera-profile.
    Profile,
    /// tessera-logging.
    Logging,
    /// tessera-notification.
    Notification,
}

impl Service {
    /// Every service, in start order (logging before the services that ship to it is
    /// not needed: shippers retry).
    pub const ALL: [Self; 5] = [
        Self::Identity,
        Self::Profile,
        Self::Logging,
        Self::Notification,
        Self::Gateway,
    ];

    /// The component name, as the operator names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gateway => "gateway",
            Self::Profile => "profile",
            Self::Logging => "logging",
            Self::Notification => "notification",
        }
    }

    pub(crate) fn binary(self) -> String {
        format!("tessera-{}", self.name())
    }

    /// Whether the operator gives it a database.
    pub(crate) fn persists(self) -> bool {
        self != Self::Gateway
    }
}

/// Where the services' databases live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Postgres {
    /// A fresh database per service on `TESSERA_TEST_POSTGRES_URL`.
    #[default]
    Shared,
    /// A PostgreSQL cluster of this platform's own, which the test may crash and
    /// restart ([`crate::Platform::stop_postgres`]).
    Private,
}

/// What the `Platform` custom resource would say, plus what the test needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `spec.identity.accessTokenTtlSeconds`.
    pub access_token_ttl_secs: u64,
    /// `spec.identity.jwksMaxAgeSeconds` (identity's JWKS max-age and the gateway's refresh).
    pub jwks_max_age_secs: u64,
    /// The key policy the harness rotates with, as the operator's `keyPolicy`.
    pub key_policy: KeyPolicy,
    /// Run tessera-logging; every other service then ships its logs to it
    /// (`TESSERA_LOG_ENDPOINT`, as the operator always sets it).
    pub logging: bool,
    /// Run tessera-notification, with a private SMTP server (`spec.notification.smtp`)
    /// and the HTTP recorder as SMS and push provider.
    pub notification: bool,
    /// `spec.identity.bootstrapAdmins`: emails that get `admin` at signup.
    pub bootstrap_admins: Vec<String>,
    /// Where the databases live.
    pub postgres: Postgres,
    /// `TESSERA_LOG_BUFFER_RECORDS` for every shipping service. The operator leaves the
    /// default (8192); the logging-outage test lowers it so that 30 s of traffic
    /// overflows it and drops become visible.
    pub log_buffer_records: Option<usize>,
    /// Run with no other platform of this test process at the same time (it waits for
    /// the others to finish, later ones wait for it): for a test that measures a rate.
    pub alone: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 900,
            jwks_max_age_secs: 300,
            key_policy: KeyPolicy {
                algorithm: Algorithm::EdDSA,
                rotation_interval: Duration::from_secs(604_800),
                pre_publication: Duration::from_secs(480),
                retirement: Duration::from_secs(1260),
            },
            logging: false,
            notification: false,
            bootstrap_admins: Vec::new(),
            postgres: Postgres::Shared,
            log_buffer_records: None,
            alone: false,
        }
    }
}
