//! Operator tests: the CRD and its validation rules, the desired children (golden files),
//! key rotation, and reconcile call sequences against a mocked API server.

mod apiserver;
mod children;
mod contract;
mod crd;
mod fixture;
mod operations;
mod reconcile;
