//! Identity's integration tests: the real service on loopback, against SQLite files and
//! PostgreSQL, driven over HTTP as clients drive it.

mod support;

mod accounts;
mod admin;
mod events;
mod input;
mod jose;
mod keys;
mod logging;
mod oauth;
mod openapi;
