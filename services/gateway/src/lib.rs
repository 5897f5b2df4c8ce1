//! The API gateway: routing, JWT authentication, throttling and resilience in front of every service.
//!
//! **Not built yet** — this crate only reserves its place in the workspace. Issue #4
//! builds it; until then it has no binary and `tessera dev` does not start it.
