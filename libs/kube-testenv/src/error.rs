//! What can go wrong starting or using the control plane.

use std::time::Duration;

/// What can go wrong starting or using the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control-plane binaries are not there; the message says how to build them.
    #[error("{0}")]
    MissingBinaries(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A component exited or did not become ready; carries the end of its log.
    #[error("{0}")]
    Start(String),
    /// The API server refused a request.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The generated kubeconfig could not be loaded.
    #[error(transparent)]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// Generating the service-account key pair failed.
    #[error("generating the service-account signing key failed")]
    KeyGeneration,
    /// A wait ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
    },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
