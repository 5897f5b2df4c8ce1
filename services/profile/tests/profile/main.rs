//! Profile's integration tests: the real service on loopback, against SQLite files and
//! PostgreSQL, with real tokens from an identity service started beside it.

mod support;

mod input;
mod logging;
mod openapi;
mod profiles;
