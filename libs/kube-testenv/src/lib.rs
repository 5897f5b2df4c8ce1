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

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::OnceCell;

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

/// The bearer token of the `admin` user (group `system:masters`) in the static token
/// file: tests only, the API server listens on loopback and lives for one test binary.
const ADMIN_TOKEN: &str = "kube-testenv-admin";

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

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

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

    async fn boot(&mut self, options: &Options, deadline: Instant) -> Result<(), Error> {
        let root = self.dir.path().to_path_buf();
        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        self.spawn(
            "etcd",
            &[
                "--name=testenv".into(),
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=testenv={peer_url}"),
                // Test data is thrown away: no fsync, no metrics listener.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;

        // The service-account token signer (TokenRequest) and verifier.
        let (private_pem, public_pem) = service_account_key()?;
        let sa_key = root.join("sa.key");
        let sa_pub = root.join("sa.pub");
        write(&sa_key, &private_pem)?;
        write(&sa_pub, &public_pem)?;
        let tokens = root.join("tokens.csv");
        write(
            &tokens,
            &format!("{ADMIN_TOKEN},admin,kube-testenv-admin,system:masters\n"),
        )?;
        let cert_dir = root.join("certs");
        self.spawn(
            "kube-apiserver",
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                // No serving cert given: the API server signs its own (a CA plus a cert
                // for 127.0.0.1 and localhost) into --cert-dir; clients trust that file.
                format!("--cert-dir={}", cert_dir.display()),
                format!("--token-auth-file={}", tokens.display()),
                "--authorization-mode=RBAC".into(),
                // The default admission plugins stay on (NamespaceLifecycle,
                // ServiceAccount, ValidatingAdmissionPolicy, ResourceQuota, ...): the
                // controller-manager creates the ServiceAccounts they expect.
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", sa_pub.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                // Endpoints may not hold a loopback address; nothing reaches the
                // `kubernetes` Service here anyway.
                "--endpoint-reconciler-type=none".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
            ],
        )?;

        let ca = cert_dir.join("apiserver.crt");
        self.wait_for_file(&ca, deadline).await?;
        write(
            &self.kubeconfig,
            &kubeconfig_yaml(&format!("https://127.0.0.1:{api_port}"), &ca),
        )?;
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        self.config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;

        self.wait_until_ready(deadline).await?;

        if options.controller_manager {
            let kcm_port = free_port()?;
            let kubeconfig = self.kubeconfig.display().to_string();
            self.spawn(
                "kube-controller-manager",
                &[
                    format!("--kubeconfig={kubeconfig}"),
                    format!("--authentication-kubeconfig={kubeconfig}"),
                    format!("--authorization-kubeconfig={kubeconfig}"),
                    "--bind-address=127.0.0.1".into(),
                    format!("--secure-port={kcm_port}"),
                    format!("--cert-dir={}", root.join("kcm-certs").display()),
                    "--leader-elect=false".into(),
                    "--controllers=*".into(),
                    format!("--service-account-private-key-file={}", sa_key.display()),
                    format!("--root-ca-file={}", ca.display()),
                    "--profiling=false".into(),
                ],
            )?;
            self.wait_for_default_service_account(deadline).await?;
        }
        Ok(())
    }

    fn spawn(&mut self, name: &'static str, args: &[String]) -> Result<(), Error> {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        let child = Command::new(self.bin_dir.join(name))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {name}")))?;
        if let Some((_, stdin)) = &mut self.janitor {
            // Best effort: if the janitor is gone, Drop still kills the process.
            let _ = writeln!(stdin, "{}", child.id());
        }
        self.components.push(Component { name, child, log });
        Ok(())
    }

    /// Fails with the component's log tail if one of the processes has exited.
    fn check_alive(&mut self) -> Result<(), Error> {
        for component in &mut self.components {
            if let Ok(Some(status)) = component.child.try_wait() {
                return Err(Error::Start(format!(
                    "{} exited ({status}) while the control plane was starting; end of its log:\n{}",
                    component.name,
                    log_tail(&component.log)
                )));
            }
        }
        Ok(())
    }

    fn timed_out(&self, what: &str) -> Error {
        let mut logs = String::new();
        for component in &self.components {
            let _ = write!(
                logs,
                "\n--- end of {} log ---\n{}",
                component.name,
                log_tail(&component.log)
            );
        }
        Error::Start(format!("timed out waiting for {what}{logs}"))
    }

    async fn wait_for_file(&mut self, path: &Path, deadline: Instant) -> Result<(), Error> {
        while !path.is_file() {
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(self.timed_out(&format!("{} to be written", path.display())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    async fn wait_until_ready(&mut self, deadline: Instant) -> Result<(), Error> {
        let client = Client::try_from(self.config.clone())?;
        loop {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("static request");
            if client.request_text(request).await.is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(self.timed_out("kube-apiserver /readyz"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_for_default_service_account(&mut self, deadline: Instant) -> Result<(), Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client()?, "default");
        loop {
            if api.get_opt("default").await?.is_some() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(self
                    .timed_out("kube-controller-manager to create the `default` ServiceAccount"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client with cluster-admin rights (group `system:masters`). A new client per
    /// call: a client's connections belong to the Tokio runtime that made them, and
    /// every `#[tokio::test]` has its own.
    pub fn client(&self) -> Result<Client, Error> {
        Ok(Client::try_from(self.config.clone())?)
    }

    /// The admin client configuration (server URL, CA, token).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A kubeconfig file for the admin user, for `helm`, `kubectl` or an operator
    /// process (`KUBECONFIG=...`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The folder with the control-plane binaries (and `helm`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// `helm` from the bin dir, talking to this API server as admin.
    pub fn helm(&self) -> Command {
        let mut command = Command::new(self.bin_dir.join("helm"));
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.path().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.path().join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.path().join("helm/data"));
        command
    }

    /// `kubectl` from the bin dir, talking to this API server as admin.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.bin_dir.join("kubectl"));
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path());
        command
    }

    /// Whether kube-controller-manager runs (garbage collection, Deployment status).
    pub fn has_controller_manager(&self) -> bool {
        self.controller_manager
    }

    /// A client authenticated as the ServiceAccount `namespace/name` with a real token
    /// (`TokenRequest`, one hour): what a pod running as that account would have. The
    /// account must exist.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client()?, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?
            .status
            .map(|status| status.token)
            .unwrap_or_default();
        let mut config = self.config.clone();
        config.auth_info = kube::config::AuthInfo {
            token: Some(SecretString::from(token)),
            ..kube::config::AuthInfo::default()
        };
        namespace.clone_into(&mut config.default_namespace);
        Ok(Client::try_from(config)?)
    }

    /// A client that impersonates the ServiceAccount `namespace/name` (admin credentials
    /// plus `Impersonate-User`/`Impersonate-Group`): no token needed, the account need
    /// not exist; RBAC decides exactly as for the account.
    pub fn impersonating_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        self.impersonating(
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ],
        )
    }

    /// A client that impersonates `user` in `groups`.
    pub fn impersonating(&self, user: &str, groups: &[&str]) -> Result<Client, Error> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|group| (*group).to_owned()).collect());
        Ok(Client::try_from(config)?)
    }

    /// Creates a namespace with a unique name starting with `prefix` and returns it.
    pub async fn fresh_namespace(&self, prefix: &str) -> Result<String, Error> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let namespaces: Api<Namespace> = Api::all(self.client()?);
        let namespace: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name },
        }))
        .expect("static namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(name)
    }

    /// The end of a component's log (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`), for failure messages.
    pub fn log_tail(&self, component: &str) -> String {
        self.components
            .iter()
            .find(|c| c.name == component)
            .map(|c| log_tail(&c.log))
            .unwrap_or_default()
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

/// A shell that, once its stdin reaches end of file without a `done` line (the test
/// process died), kills every pid it was told and removes `dir`. Ignores SIGINT so a
/// Ctrl-C of `cargo test` still cleans up.
fn spawn_janitor(dir: &Path) -> Result<(Child, ChildStdin), Error> {
    let script = r#"trap '' INT TERM HUP
pids=""
while read -r line; do
  [ "$line" = done ] && exit 0
  pids="$pids $line"
done
[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
sleep 1
rm -rf -- "$1""#;
    let mut child = Command::new("bash")
        .args(["-c", script, "kube-testenv-janitor"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("starting the cleanup shell (bash)"))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    Ok((child, stdin))
}

/// A loopback port free at the time of asking.
fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(io(format!("writing {}", path.display())))
}

/// The last 40 lines of a log file.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A P-256 key pair for service-account tokens: PKCS#8 private key and SPKI public
/// key, both PEM.
fn service_account_key() -> Result<(String, String), Error> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| Error::KeyGeneration)?;
    let private = pair.to_pkcs8v1().map_err(|_| Error::KeyGeneration)?;
    let public = pair
        .public_key()
        .as_der()
        .map_err(|_| Error::KeyGeneration)?;
    Ok((
        pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref().to_vec())),
        pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec())),
    ))
}

fn kubeconfig_yaml(server: &str, ca: &Path) -> String {
    // JSON is YAML: no YAML writer needed.
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "testenv", "cluster": {
            "server": server,
            "certificate-authority": ca,
        }}],
        "users": [{ "name": "admin", "user": { "token": ADMIN_TOKEN } }],
        "contexts": [{ "name": "testenv", "context": {
            "cluster": "testenv", "user": "admin", "namespace": "default",
        }}],
        "current-context": "testenv",
    })
    .to_string()
}

/// Makes the Deployment `namespace/name` Available the way a kubelet would: marks its
/// pods (created by the real `ReplicaSet` controller) Running and Ready until the real
/// Deployment controller reports `Available=True`. Needs kube-controller-manager.
pub async fn make_deployment_available(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<Deployment, Error> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    loop {
        let deployment = deployments.get(name).await?;
        if is_available(&deployment) {
            return Ok(deployment);
        }
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.match_labels.as_ref())
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        for pod in pods.list(&ListParams::default().labels(&selector)).await? {
            if pod.metadata.deletion_timestamp.is_none() && !is_ready(&pod) {
                mark_pod_ready(&pods, &pod).await?;
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("Deployment {namespace}/{name} to become Available"),
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_available(deployment: &Deployment) -> bool {
    let Some(status) = &deployment.status else {
        return false;
    };
    let generation = deployment.metadata.generation.unwrap_or_default();
    status.observed_generation.unwrap_or_default() >= generation
        && status.updated_replicas == status.replicas
        && status
            .conditions
            .iter()
            .flatten()
            .any(|condition| condition.type_ == "Available" && condition.status == "True")
        && status.available_replicas.unwrap_or_default()
            >= deployment
                .spec
                .as_ref()
                .and_then(|spec| spec.replicas)
                .unwrap_or(1)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True")
        })
}

/// Patches a pod's status (`pods/status`) to Running with every container ready, as
/// a kubelet would after a successful start.
pub async fn mark_pod_ready(pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formatting of a UTC time");
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|spec| spec.containers.as_slice())
        .unwrap_or_default();
    let statuses: Vec<_> = containers
        .iter()
        .map(|container| {
            json!({
                "name": container.name,
                "image": container.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": { "running": { "startedAt": now } },
            })
        })
        .collect();
    let condition =
        |type_: &str| json!({ "type": type_, "status": "True", "lastTransitionTime": now });
    let patch = json!({
        "status": {
            "phase": "Running",
            "startTime": now,
            "conditions": [
                condition("PodScheduled"),
                condition("Initialized"),
                condition("ContainersReady"),
                condition("Ready"),
            ],
            "containerStatuses": statuses,
        }
    });
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
