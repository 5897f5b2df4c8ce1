//! The API gateway: the single entry for web and mobile clients (DESIGN.md §1–3).
//!
//! **Being built (issue #4).** Modules: `routes` (the routes file, matching, hot
//! reload), `ratelimit` (GCRA, local and Redis), `proxy` (upstream pools and resilience).

pub mod proxy;
pub mod ratelimit;
pub mod routes;
