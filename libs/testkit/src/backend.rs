//! The two databases every service runs on, and running a test scenario on both.

use std::path::Path;

/// A database a service can run on; tests run their scenarios on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A database URL for a test: the SQLite file `<name>.db` in `dir`, or a fresh
    /// PostgreSQL database (see [`crate::fresh_postgres_database`]).
    pub async fn database_url(self, dir: &Path, name: &str) -> String {
        match self {
            Self::Sqlite => format!("sqlite:{}", dir.join(format!("{name}.db")).display()),
            Self::Postgres => crate::fresh_postgres_database().await,
        }
    }
}

/// Runs each test body against SQLite and against PostgreSQL: two `#[tokio::test]`s per
/// scenario, `sqlite::<name>` and `postgres::<name>`, with `$backend` bound to the
/// [`Backend`] of each: `on_both_backends! { async fn name(backend: Backend) { … } … }`.
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($backend:ident: Backend) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test] async fn $name() { let $backend = $crate::Backend::Sqlite; $body } )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test] async fn $name() { let $backend = $crate::Backend::Postgres; $body } )*
        }
    };
}
