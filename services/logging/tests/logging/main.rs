//! The logging service's integration tests: the real service on loopback against SQLite
//! files and PostgreSQL, driven over HTTP the way OTLP exporters and the explorer do.

mod support;

mod cdp;

mod audit;
mod bus;
mod explorer;
mod ingest;
mod input;
mod openapi;
mod query;
mod retention;
mod sdk;
mod shipping;
mod text;
