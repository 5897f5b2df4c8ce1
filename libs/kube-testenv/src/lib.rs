//! A real Kubernetes control plane for tests: etcd, kube-apiserver and
//! kube-controller-manager, built from their Go modules by `tools/testenv/build`, run as
//! local processes on free loopback ports (the approach of controller-runtime's envtest,
//! plus the controller-manager for garbage collection, `ReplicaSets` and `Deployment`
//! status).
//!
//! No kubelet runs, so pods never start: [`make_deployment_available`] marks a
//! Deployment's pods Ready so the real Deployment controller reports it Available.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_testenv::Error> {
//! let env = kube_testenv::TestEnv::shared().await?;
//! let admin = env.client()?;
//! let namespace = env.fresh_namespace("demo").await?;
//! # Ok(()) }
//! ```

mod boot;
mod clients;
mod error;
mod workloads;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, ChildStdin};
use std::time::{Duration, Instant};

use kube::Config;
use tokio::sync::OnceCell;

use boot::spawn_janitor;
pub use error::Error;
use error::io;
pub use workloads::{make_deployment_available, mark_pod_ready};

/// The environment variable naming the folder with `etcd`, `kube-apiserver`,
/// `kube-controller-manager`, `kubectl` and `helm` (printed by `tools/testenv/build`).
pub const BIN_DIR_ENV: &str = "TESSERA_TESTENV_BIN";

/// The binaries `tools/testenv/build` puts in [`BIN_DIR_ENV`].
const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "helm",
];

/// The folder with the control-plane binaries, from [`BIN_DIR_ENV`], checked complete.
///
/// Fails (never skips) with a message saying how to build them when the variable is
/// missing or the folder lacks a binary.
pub fn bin_dir() -> Result<PathBuf, Error> {
    bin_dir_from(std::env::var_os(BIN_DIR_ENV))
}

/// [`bin_dir`] for a given value of [`BIN_DIR_ENV`] (`None`: unset).
pub fn bin_dir_from(value: Option<std::ffi::OsString>) -> Result<PathBuf, Error> {
    let how = "build them with `just testenv` (tools/testenv/build, from the Go module proxy; \
               about 15 minutes cold) and run tests through `just test`, or export \
               TESSERA_TESTENV_BIN=\"$(tools/testenv/build --bin-dir)\"";
    let dir = value.ok_or_else(|| {
        Error::MissingBinaries(format!(
            "{BIN_DIR_ENV} is not set, so the Kubernetes control plane cannot start: {how}"
        ))
    })?;
    let dir = PathBuf::from(dir);
    for binary in BINARIES {
        if !dir.join(binary).is_file() {
            return Err(Error::MissingBinaries(format!(
                "{BIN_DIR_ENV}={} has no `{binary}`: {how}",
                dir.display()
            )));
        }
    }
    Ok(dir)
}

/// Which parts to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Start kube-controller-manager too (garbage collection, `ReplicaSets`, `Deployment`
    /// status, namespace deletion, default `ServiceAccounts`). On by default.
    pub controller_manager: bool,
    /// How long etcd + kube-apiserver (+ controller-manager) may take to become ready.
    pub startup_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            controller_manager: true,
            // A cold API server on a busy 2-core machine needs 10–30 s.
            startup_timeout: Duration::from_secs(120),
        }
    }
}

/// A child process with the file its output goes to.
#[derive(Debug)]
struct Component {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// A running control plane. Dropping it kills the processes and removes the temp dir;
/// if the test process dies without unwinding (SIGKILL, abort), a janitor shell that
/// holds the other end of a pipe notices and does the same.
#[derive(Debug)]
pub struct TestEnv {
    components: Vec<Component>,
    janitor: Option<(Child, ChildStdin)>,
    config: Config,
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
    controller_manager: bool,
    // Last: removed after the processes are gone.
    dir: tempfile::TempDir,
}

static SHARED: OnceCell<TestEnv> = OnceCell::const_new();

impl TestEnv {
    /// Starts a control plane of its own (default [`Options`]), stopped when dropped.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::default()).await
    }

    /// One control plane per test binary, started by the first caller and shared by
    /// the rest (a start costs seconds of both cores). Give each test its own namespace
    /// ([`TestEnv::fresh_namespace`]). Its processes end with the test binary (janitor).
    pub async fn shared() -> Result<&'static Self, Error> {
        SHARED
            .get_or_try_init(|| Self::start_with(Options::default()))
            .await
    }

    /// Starts etcd, kube-apiserver and (by default) kube-controller-manager and waits
    /// until the API server is ready (and the controller-manager has created the
    /// `default` ServiceAccount).
    pub async fn start_with(options: Options) -> Result<Self, Error> {
        let bin_dir = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("kube-testenv-")
            .tempdir()
            .map_err(io("creating the control plane's temp dir"))?;
        let janitor = spawn_janitor(dir.path())?;
        let mut env = TestEnv {
            components: Vec::new(),
            janitor: Some(janitor),
            config: Config::new("https://127.0.0.1".parse().expect("static URI")),
            kubeconfig: dir.path().join("kubeconfig"),
            bin_dir,
            controller_manager: options.controller_manager,
            dir,
        };
        let deadline = Instant::now() + options.startup_timeout;
        env.boot(&options, deadline).await?;
        Ok(env)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Controller-manager first, etcd last: nothing logs errors about a vanished
        // dependency while stopping.
        for component in self.components.iter_mut().rev() {
            let _ = component.child.kill();
            let _ = component.child.wait();
        }
        if let Some((mut janitor, mut stdin)) = self.janitor.take() {
            // Everything is reaped: the janitor must not kill pids that may be reused.
            let _ = writeln!(stdin, "done");
            drop(stdin);
            let _ = janitor.wait();
        }
        // `dir` (TempDir) removes the folder when dropped after this.
    }
}
