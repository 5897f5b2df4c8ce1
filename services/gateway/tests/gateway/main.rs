//! The gateway's integration tests: real upstream servers, a real JWKS server and real
//! Redis on loopback.

mod edge;
mod logging;
mod observability;
mod proxy;
mod ratelimit;
mod server;
mod support;
mod throttling;
mod workers;
