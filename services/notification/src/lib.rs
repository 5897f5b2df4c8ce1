//! The notification service: event-driven email, SMS and push delivery.
//!
//! **Not built yet** — this crate only reserves its place in the workspace. Issue #5
//! builds it; until then it has no binary and `tessera dev` does not start it.
