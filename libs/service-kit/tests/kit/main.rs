//! Integration tests of the service kit against real SQLite files and a real PostgreSQL
//! server, through real sockets.

mod app;
mod database;
mod errors;
mod lifecycle;
mod observability;
