//! Whole-platform end-to-end tests (issue #9): every service a separate process from its
//! built binary, clients talking to the gateway only.

mod faults;
mod logging;
mod outages;
mod rotation;
mod seed;
