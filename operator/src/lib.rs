//! The Kubernetes operator: reconciles a `Platform` into a running Tessera and rotates
//! its signing keys (DESIGN.md §4, §7).

pub mod children;
pub mod controller;
// `KubeSchema` re-emits every struct it derives for in a private module, which trips
// `unreachable_pub` on types that are in fact exported.
#[allow(unreachable_pub)]
pub mod crd;
pub mod keys;
pub mod metrics;
mod run;

pub use crd::{Platform, PlatformSpec, PlatformStatus};
pub use run::{Config, RunError, run, run_controller, run_until};

use kube::CustomResourceExt as _;

/// The CRD as YAML, as committed in `crds/platform.yaml`.
pub fn crd_yaml() -> String {
    let crd = Platform::crd();
    serde_saphyr::to_string(&crd).expect("a CRD always serializes")
}
