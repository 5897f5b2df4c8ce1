//! Operator tests: the CRD and its validation rules, the desired children (golden files),
//! key rotation, and reconcile call sequences against a mocked API server.

mod children;
mod crd;
mod fixture;
