//! The identity service: users, service clients, JWT issuance, JWKS and signing-key rotation.
//!
//! **Not built yet** — this crate only reserves its place in the workspace. Issue #3
//! builds it; until then it has no binary and `tessera dev` does not start it.
