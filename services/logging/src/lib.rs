//! The logging service: OTLP/HTTP log ingestion, query API, log explorer and hash-chained audit trail.
//!
//! **Not built yet** — this crate only reserves its place in the workspace. Issue #6
//! builds it; until then it has no binary and `tessera dev` does not start it.
