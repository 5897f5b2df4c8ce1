//! A whole platform on loopback: one process per service, each with its own PostgreSQL
//! database, sharing the test NATS JetStream, configured with the env vars and mounted
//! files of the operator's Deployments (operator/src/children/workload.rs).

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tessera_keys::{Algorithm, KeyPolicy, Rotation};
use time::OffsetDateTime;

use crate::binaries;
use crate::files::{self, KeysetFile};
use crate::process::Process;

/// How long a service may take to answer `/readyz` with 200 (migrations included) on a
/// busy 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The services the harness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// tessera-identity.
    Identity,
    /// tessera-gateway.
    Gateway,
    /// tessera-profile.
    Profile,
    /// tessera-logging.
    Logging,
}

impl Service {
    /// The component name, as the operator names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gateway => "gateway",
            Self::Profile => "profile",
            Self::Logging => "logging",
        }
    }

    fn binary(self) -> String {
        format!("tessera-{}", self.name())
    }
}

/// What the `Platform` custom resource would say.
#[derive(Debug, Clone)]
pub struct Options {
    /// `spec.identity.accessTokenTtlSeconds`.
    pub access_token_ttl_secs: u64,
    /// `spec.identity.jwksMaxAgeSeconds` (identity's JWKS max-age and the gateway's refresh).
    pub jwks_max_age_secs: u64,
    /// The key policy the harness rotates with, as the operator's `keyPolicy`.
    pub key_policy: KeyPolicy,
    /// Run tessera-logging too (when its binary is built).
    pub logging: bool,
    /// `spec.identity.bootstrapAdmins`: emails that get `admin` at signup.
    pub bootstrap_admins: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 900,
            jwks_max_age_secs: 300,
            key_policy: KeyPolicy {
                algorithm: Algorithm::EdDSA,
                rotation_interval: Duration::from_secs(604_800),
                pre_publication: Duration::from_secs(480),
                retirement: Duration::from_secs(1260),
            },
            logging: false,
            bootstrap_admins: Vec::new(),
        }
    }
}

struct Ports {
    http: u16,
    admin: u16,
}

/// The running platform. Dropping it kills every process; when the test is failing,
/// the tails of every process's logs are printed first and the temp dir is kept.
#[derive(Debug)]
pub struct Platform {
    gateway_url: String,
    admin_urls: Vec<(Service, String)>,
    processes: Vec<(Service, Mutex<Process>)>,
    keyset: Mutex<KeysetFile>,
    http: reqwest::Client,
    dir: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    // Bound and released at once; the service binds it a moment later. Another process
    // could take it in between, which on loopback in a test run is rare enough.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

impl Platform {
    /// Starts identity, profile, (logging,) and the gateway, and waits until each
    /// answers `/readyz` with 200.
    ///
    /// # Panics
    /// When a binary is missing, PostgreSQL or NATS is not configured, or a service does
    /// not become ready (its log tails are printed).
    pub async fn start(options: Options) -> Self {
        // Ports are picked free and bound by the services a moment later; if another
        // process took one in between, start everything again on new ports.
        for attempt in 1..=3 {
            let platform = Self::launch(&options).await;
            match platform.all_ready().await {
                Ok(()) => return platform,
                Err(error) if attempt < 3 && platform.log_tails().contains("in use") => {
                    eprintln!("e2e: {error}; a port was taken, starting again");
                }
                Err(error) => panic!("{error}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    async fn launch(options: &Options) -> Self {
        let nats_url = nats_url();
        let mut services = vec![Service::Identity, Service::Profile];
        if options.logging && binaries::find("tessera-logging").is_some() {
            services.push(Service::Logging);
        }
        services.push(Service::Gateway);
        let binaries: Vec<_> = services
            .iter()
            .map(|s| (*s, binaries::binary(&s.binary())))
            .collect();

        let dir = tempfile::Builder::new()
            .prefix("tessera-e2e-")
            .tempdir()
            .expect("a temp dir");
        let root = dir.path();
        for sub in ["keyset", "clients", "routes", "logs"] {
            std::fs::create_dir(root.join(sub)).expect("create a mounted dir");
        }
        let ports: Vec<(Service, Ports)> = services
            .iter()
            .map(|s| {
                (
                    *s,
                    Ports {
                        http: free_port(),
                        admin: free_port(),
                    },
                )
            })
            .collect();
        let port = |service: Service| {
            ports
                .iter()
                .find(|(s, _)| *s == service)
                .map(|(_, p)| p)
                .expect("a started service")
        };
        let url = |service: Service| format!("http://127.0.0.1:{}", port(service).http);
        let gateway_url = url(Service::Gateway);
        let identity_url = url(Service::Identity);

        // The operator's generated material: keyset, pepper, one client secret per
        // service that calls identity, the registry and the routes.
        let keyset = KeysetFile::bootstrap(&root.join("keyset"), options.key_policy);
        let (pepper, secrets) = client_material(root);
        let upstreams: Vec<(&str, String)> = services
            .iter()
            .filter(|s| !matches!(s, Service::Identity | Service::Gateway))
            .map(|s| (s.name(), url(*s)))
            .collect();
        let routes = root.join("routes/routes.yaml");
        std::fs::write(&routes, files::routes_yaml(&identity_url, &upstreams))
            .expect("write the routes file");

        let mut processes = Vec::new();
        let mut admin_urls = Vec::new();
        for (service, binary) in binaries {
            let ports = port(service);
            let mut env = service_env(
                service,
                ports,
                &Shared {
                    options,
                    gateway_url: &gateway_url,
                    identity_url: &identity_url,
                    nats_url: &nats_url,
                    root,
                    pepper: &pepper,
                    secrets: &secrets,
                    upstreams: &upstreams,
                },
            );
            if service != Service::Gateway {
                env.push(var(
                    "TESSERA_DATABASE_URL",
                    testkit::fresh_postgres_database().await,
                ));
            }
            processes.push((
                service,
                Mutex::new(Process::start(
                    service.name(),
                    binary,
                    env,
                    &root.join("logs"),
                )),
            ));
            admin_urls.push((service, format!("http://127.0.0.1:{}", ports.admin)));
        }

        Self {
            gateway_url,
            admin_urls,
            processes,
            keyset: Mutex::new(keyset),
            http: reqwest::Client::new(),
            dir: Some(dir),
        }
    }

    async fn all_ready(&self) -> Result<(), String> {
        for (service, _) in &self.processes {
            self.ready(*service).await?;
        }
        Ok(())
    }

    /// The gateway's URL, the only one clients use (and the tokens' issuer).
    pub fn gateway(&self) -> &str {
        &self.gateway_url
    }

    /// A service's admin listener URL (`/readyz`, `/metrics`, `/debug/keys`).
    pub fn admin_url(&self, service: Service) -> &str {
        self.admin_urls
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, url)| url.as_str())
            .expect("a started service")
    }

    /// Whether `service` was started (logging only when asked and built).
    pub fn runs(&self, service: Service) -> bool {
        self.processes.iter().any(|(s, _)| *s == service)
    }

    fn process(&self, service: Service) -> &Mutex<Process> {
        self.processes
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, p)| p)
            .expect("a started service")
    }

    /// Waits until `service` answers `/readyz` with 200.
    ///
    /// # Panics
    /// When it exits or is not ready within the limit.
    pub async fn wait_ready(&self, service: Service) {
        if let Err(error) = self.ready(service).await {
            panic!("{error}");
        }
    }

    async fn ready(&self, service: Service) -> Result<(), String> {
        let url = format!("{}/readyz", self.admin_url(service));
        let started = Instant::now();
        loop {
            if let Ok(response) = self.http.get(&url).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if let Some(status) = lock(self.process(service)).exited() {
                return Err(format!(
                    "{} exited with {status} before it was ready",
                    service.name()
                ));
            }
            if started.elapsed() >= READY_TIMEOUT {
                return Err(format!("{url} did not answer 200 within {READY_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills `service` (SIGKILL).
    pub fn stop(&self, service: Service) {
        lock(self.process(service)).stop();
    }

    /// Starts `service` again with the same settings and waits until it is ready.
    pub async fn restart(&self, service: Service) {
        lock(self.process(service)).restart();
        self.wait_ready(service).await;
    }

    /// One step of the operator's key rotation at `now` (see [`KeysetFile::rotate`]).
    pub fn rotate_keys(&self, now: OffsetDateTime) -> Rotation {
        lock(&self.keyset).rotate(now)
    }

    /// The kid of the key currently signing, per the keyset file.
    pub fn active_kid(&self) -> String {
        lock(&self.keyset)
            .keyset()
            .active()
            .map(|k| k.kid.clone())
            .expect("an active key")
    }

    /// The tails of every process's logs.
    pub fn log_tails(&self) -> String {
        self.processes
            .iter()
            .map(|(_, p)| lock(p).tails())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The test NATS server (JetStream), shared by every platform.
fn nats_url() -> String {
    std::env::var("TESSERA_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!(
            "TESSERA_TEST_NATS_URL is not set: these tests need NATS with JetStream. \
                Run `just services` and `eval \"$(tools/services env)\"`"
        )
    })
}

/// The pepper, one client secret per service that calls identity, and identity's
/// client registry written under `root`, as the operator generates them.
fn client_material(root: &Path) -> ([u8; 32], Vec<(String, String)>) {
    let mut pepper = [0u8; 32];
    aws_lc_rs::rand::fill(&mut pepper).expect("the system random generator");
    let secrets: Vec<(String, String)> = ["logging", "notification", "profile"]
        .iter()
        .map(|name| ((*name).to_owned(), files::random_client_secret()))
        .collect();
    std::fs::write(
        root.join("clients/clients.json"),
        files::client_registry_json(&pepper, &secrets),
    )
    .expect("write the client registry");
    (pepper, secrets)
}

/// What every service's settings are derived from.
struct Shared<'a> {
    options: &'a Options,
    gateway_url: &'a str,
    identity_url: &'a str,
    nats_url: &'a str,
    root: &'a Path,
    pepper: &'a [u8; 32],
    secrets: &'a [(String, String)],
    upstreams: &'a [(&'a str, String)],
}

/// The env vars the operator's Deployment of `service` sets (its env ConfigMap and
/// secret env), with loopback addresses and the temp dirs as mount points.
fn service_env(service: Service, ports: &Ports, cx: &Shared<'_>) -> Vec<(String, String)> {
    let mut env = vec![
        var("TESSERA_LISTEN", format!("127.0.0.1:{}", ports.http)),
        var("TESSERA_ADMIN_LISTEN", format!("127.0.0.1:{}", ports.admin)),
        var("TESSERA_LOG_FORMAT", "json"),
    ];
    let issuer = var("TESSERA_ISSUER", cx.gateway_url.to_owned());
    let audiences = var("TESSERA_AUDIENCES", "tessera");
    if service == Service::Identity && !cx.options.bootstrap_admins.is_empty() {
        env.push(var(
            "TESSERA_BOOTSTRAP_ADMINS",
            cx.options.bootstrap_admins.join(","),
        ));
    }
    match service {
        Service::Gateway => env.extend([
            var(
                "TESSERA_ROUTES_FILE",
                path(&cx.root.join("routes/routes.yaml")),
            ),
            var(
                "TESSERA_JWKS_URL",
                format!("{}/.well-known/jwks.json", cx.identity_url),
            ),
            issuer,
            audiences,
            var(
                "TESSERA_JWKS_REFRESH_SECS",
                cx.options.jwks_max_age_secs.max(1).to_string(),
            ),
        ]),
        Service::Identity => env.extend([
            issuer,
            audiences,
            var("TESSERA_KEYSET_DIR", path(&cx.root.join("keyset"))),
            var(
                "TESSERA_CLIENT_REGISTRY",
                path(&cx.root.join("clients/clients.json")),
            ),
            var("TESSERA_TRUST_FORWARDED_FOR", "true"),
            var("TESSERA_NATS_URL", cx.nats_url.to_owned()),
            var(
                "TESSERA_ACCESS_TOKEN_TTL_SECS",
                cx.options.access_token_ttl_secs.to_string(),
            ),
            var(
                "TESSERA_JWKS_MAX_AGE_SECS",
                cx.options.jwks_max_age_secs.to_string(),
            ),
            var(
                "TESSERA_CLIENT_SECRET_PEPPER",
                base64::engine::general_purpose::STANDARD.encode(cx.pepper),
            ),
        ]),
        Service::Profile | Service::Logging => {
            let secret = cx
                .secrets
                .iter()
                .find(|(id, _)| id == service.name())
                .map(|(_, s)| s.clone())
                .expect("a client secret");
            env.extend([
                issuer,
                audiences,
                var(
                    "TESSERA_JWKS_URL",
                    format!("{}/.well-known/jwks.json", cx.identity_url),
                ),
                var("TESSERA_NATS_URL", cx.nats_url.to_owned()),
                var(
                    "TESSERA_TOKEN_URL",
                    format!("{}/oauth2/token", cx.identity_url),
                ),
                var("TESSERA_CLIENT_ID", service.name()),
                var("TESSERA_CLIENT_SECRET", secret),
            ]);
            if service == Service::Logging {
                env.push(var("TESSERA_RETENTION_DAYS", "7"));
                env.push(var("TESSERA_RETENTION_DEBUG_DAYS", "3"));
            } else if let Some((_, logging)) = cx.upstreams.iter().find(|(n, _)| *n == "logging") {
                // Only when logging runs here (the operator always deploys it).
                env.push(var("TESSERA_LOG_ENDPOINT", format!("{logging}/v1/logs")));
            }
        }
    }
    env
}

fn path(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_owned()
}

impl Drop for Platform {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
            if let Some(dir) = self.dir.take() {
                eprintln!("e2e logs kept in {}", dir.keep().display());
            }
        }
        for (_, process) in &self.processes {
            lock(process).stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The operator's code deciding each Deployment's env (read only, whatever file of
    /// operator/src/children holds it).
    fn operator_children_source() -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../operator/src/children");
        let mut source = String::new();
        for entry in std::fs::read_dir(&dir).expect("operator/src/children") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(&path).expect("a source file"));
            }
        }
        source
    }

    fn golden(service: Service) -> &'static str {
        match service {
            Service::Identity => {
                include_str!("../../../operator/tests/operator/golden/identity.yaml")
            }
            Service::Gateway => {
                include_str!("../../../operator/tests/operator/golden/gateway.yaml")
            }
            Service::Profile => {
                include_str!("../../../operator/tests/operator/golden/profile.yaml")
            }
            Service::Logging => {
                include_str!("../../../operator/tests/operator/golden/logging.yaml")
            }
        }
    }

    fn env_names(text: &str) -> BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|word| word.starts_with("TESSERA_") && word.len() > "TESSERA_".len())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_service_gets_the_env_names_the_operator_sets_and_no_others() {
        let root = Path::new("/tmp/e2e");
        let secrets = vec![
            ("logging".to_owned(), "tsc_l".to_owned()),
            ("profile".to_owned(), "tsc_p".to_owned()),
        ];
        let upstreams = vec![("logging", "http://127.0.0.1:2".to_owned())];
        let cx = Shared {
            options: &Options::default(),
            gateway_url: "http://127.0.0.1:1",
            identity_url: "http://127.0.0.1:3",
            nats_url: "nats://127.0.0.1:4222",
            root,
            pepper: &[0; 32],
            secrets: &secrets,
            upstreams: &upstreams,
        };
        let ports = Ports { http: 1, admin: 2 };
        let operator = operator_children_source();
        for service in [
            Service::Identity,
            Service::Gateway,
            Service::Profile,
            Service::Logging,
        ] {
            let mut ours: BTreeSet<String> = service_env(service, &ports, &cx)
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            // The database URL is added by `Platform::start` for services that persist.
            if service != Service::Gateway {
                ours.insert("TESSERA_DATABASE_URL".into());
            }
            let missing: Vec<_> = env_names(golden(service))
                .difference(&ours)
                .cloned()
                .collect();
            assert!(
                missing.is_empty(),
                "{}: the operator sets {missing:?}",
                service.name()
            );
            for name in &ours {
                assert!(
                    operator.contains(&format!("\"{name}\"")),
                    "{}: {name} is not an env var the operator sets",
                    service.name()
                );
            }
        }
    }
}
