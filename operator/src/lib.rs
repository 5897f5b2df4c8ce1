//! The Kubernetes operator: reconciles a Platform resource into a running Tessera and rotates its signing keys.
//!
//! **Not built yet** — this crate only reserves its place in the workspace. Issue #7
//! builds it; until then it has no binary and `tessera dev` does not start it.
