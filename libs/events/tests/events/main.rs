//! The event library against the real NATS JetStream server (`TESSERA_TEST_NATS_URL`),
//! SQLite files and PostgreSQL (`TESSERA_TEST_POSTGRES_URL`).

mod support;

mod consumer;
mod in_process;
mod relay;
