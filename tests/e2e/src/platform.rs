//! A whole platform on loopback: one process per service, each with its own PostgreSQL
//! database, a NATS JetStream server of the platform's own (the operator deploys one per
//! Platform), a private SMTP server and the SMS/push recorder, configured with the env
//! vars and mounted files of the operator's Deployments (see `env.rs`).

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tessera_keys::Rotation;
use testkit::{PrivateNats, PrivatePostgres, Recorder, SmtpServer};
use time::OffsetDateTime;

use crate::binaries;
use crate::env::{self, Shared};
use crate::files::{self, KeysetFile};
use crate::process::Process;
use crate::service::{Options, Postgres, Service};

/// How long a service may take to answer `/readyz` with 200 (migrations included) on a
/// busy 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The running platform. Dropping it kills every process; when the test is failing,
/// the tails of every process's logs are printed first and the temp dir is kept.
#[derive(Debug)]
pub struct Platform {
    gateway_url: String,
    admin_urls: Vec<(Service, String)>,
    processes: Vec<(Service, Mutex<Process>)>,
    keyset: Mutex<KeysetFile>,
    http: reqwest::Client,
    nats: tokio::sync::Mutex<PrivateNats>,
    nats_url: String,
    postgres: Option<tokio::sync::Mutex<PrivatePostgres>>,
    smtp: Option<SmtpServer>,
    recorder: Option<Recorder>,
    dir: Option<tempfile::TempDir>,
    /// This platform's turn on the machine; declared last so it is given up only after
    /// the processes are stopped.
    turn: Option<Turn>,
}

/// Platforms of the tests in one process run side by side, except one started with
/// [`Options::alone`]: it waits until the others are gone and the others wait for it,
/// so that what it measures is not shared with another platform's load.
static TURNS: std::sync::LazyLock<std::sync::Arc<tokio::sync::RwLock<()>>> =
    std::sync::LazyLock::new(Default::default);

/// A held turn (see [`TURNS`]).
#[derive(Debug)]
#[allow(dead_code, reason = "held for its drop")]
enum Turn {
    Shared(tokio::sync::OwnedRwLockReadGuard<()>),
    Alone(tokio::sync::OwnedRwLockWriteGuard<()>),
}

/// The servers a platform has of its own besides the services.
struct Servers {
    nats: PrivateNats,
    postgres: Option<PrivatePostgres>,
    smtp: Option<SmtpServer>,
    recorder: Option<Recorder>,
}

impl Servers {
    async fn start(options: &Options, root: &Path) -> Self {
        let nats = PrivateNats::start().await;
        let postgres = match options.postgres {
            Postgres::Shared => None,
            Postgres::Private => Some(PrivatePostgres::start().await),
        };
        let (smtp, recorder) = if options.notification {
            (
                Some(SmtpServer::start_in(&root.join("mail")).await),
                Some(Recorder::start().await),
            )
        } else {
            (None, None)
        };
        Self {
            nats,
            postgres,
            smtp,
            recorder,
        }
    }
}

fn free_port() -> u16 {
    // Bound and released at once; the service binds it a moment later. Another process
    // could take it in between: `Platform::start` then starts again on new ports.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Platform {
    /// Starts identity, profile, (logging, notification,) and the gateway, and waits
    /// until each answers `/readyz` with 200.
    ///
    /// # Panics
    /// When a binary is missing, PostgreSQL is not configured, or a service does not
    /// become ready (its log tails are printed).
    pub async fn start(options: Options) -> Self {
        let mut turn = Some(if options.alone {
            Turn::Alone(TURNS.clone().write_owned().await)
        } else {
            Turn::Shared(TURNS.clone().read_owned().await)
        });
        for attempt in 1..=3 {
            let mut platform = Self::launch(&options).await;
            match platform.all_ready().await {
                Ok(()) => {
                    platform.turn = turn.take();
                    return platform;
                }
                Err(error) if attempt < 3 && platform.log_tails().contains("in use") => {
                    eprintln!("e2e: {error}; a port was taken, starting again");
                }
                Err(error) => panic!("{error}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    async fn launch(options: &Options) -> Self {
        let mut services = vec![Service::Identity, Service::Profile];
        if options.logging {
            services.push(Service::Logging);
        }
        if options.notification {
            services.push(Service::Notification);
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
        for sub in ["keyset", "clients", "routes", "logs", "mail"] {
            std::fs::create_dir(root.join(sub)).expect("create a mounted dir");
        }
        let Servers {
            nats,
            postgres,
            smtp,
            recorder,
        } = Servers::start(options, root).await;

        let ports: Vec<(Service, u16, u16)> = services
            .iter()
            .map(|s| (*s, free_port(), free_port()))
            .collect();
        let urls: Vec<(Service, String)> = ports
            .iter()
            .map(|(s, http, _)| (*s, format!("http://127.0.0.1:{http}")))
            .collect();
        let url = |service: Service| {
            urls.iter()
                .find(|(s, _)| *s == service)
                .map(|(_, u)| u.clone())
                .expect("a started service")
        };
        let gateway_url = url(Service::Gateway);

        // The operator's generated material: keyset, pepper, one client secret per
        // service that calls identity, the registry and the routes.
        let keyset = KeysetFile::bootstrap(&root.join("keyset"), options.key_policy);
        let (pepper, secrets) = client_material(root);
        let upstreams: Vec<(&str, String)> = services
            .iter()
            .filter(|s| !matches!(s, Service::Identity | Service::Gateway))
            .map(|s| (s.name(), url(*s)))
            .collect();
        std::fs::write(
            root.join("routes/routes.yaml"),
            files::routes_yaml(&url(Service::Identity), &upstreams),
        )
        .expect("write the routes file");

        let service_urls: Vec<(Service, String)> = urls
            .iter()
            .filter(|(s, _)| *s != Service::Gateway)
            .cloned()
            .collect();
        let smtp_url = smtp.as_ref().map(SmtpServer::url).unwrap_or_default();
        let nats_url = nats.url();
        let shared = Shared {
            options,
            gateway_url: &gateway_url,
            urls: &service_urls,
            nats_url: &nats_url,
            root,
            pepper: &pepper,
            secrets: &secrets,
            smtp_url: &smtp_url,
            recorder_url: recorder.as_ref().map_or("", Recorder::url),
        };
        let (processes, admin_urls) =
            start_processes(binaries, &ports, &shared, postgres.as_ref(), root).await;

        Self {
            gateway_url,
            admin_urls,
            processes,
            keyset: Mutex::new(keyset),
            http: reqwest::Client::new(),
            nats_url,
            nats: tokio::sync::Mutex::new(nats),
            postgres: postgres.map(tokio::sync::Mutex::new),
            smtp,
            recorder,
            dir: Some(dir),
            turn: None,
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

    /// Whether `service` was started.
    pub fn runs(&self, service: Service) -> bool {
        self.processes.iter().any(|(s, _)| *s == service)
    }

    /// The platform's NATS server (`nats://127.0.0.1:<port>`).
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// The SMTP server notification sends to.
    ///
    /// # Panics
    /// Without `Options::notification`.
    pub fn smtp(&self) -> &SmtpServer {
        self.smtp.as_ref().expect("Options::notification")
    }

    /// The SMS and push providers' stand-in.
    ///
    /// # Panics
    /// Without `Options::notification`.
    pub fn recorder(&self) -> &Recorder {
        self.recorder.as_ref().expect("Options::notification")
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

    /// Whether `service` is still the process the platform started (it has not exited
    /// by itself, e.g. crashed or given up on a dependency).
    pub fn still_running(&self, service: Service) -> bool {
        lock(self.process(service)).exited().is_none()
    }

    /// Kills the platform's NATS server (its JetStream store stays).
    pub async fn stop_nats(&self) {
        self.nats.lock().await.stop();
    }

    /// Starts the NATS server again on the same port and store.
    pub async fn resume_nats(&self) {
        self.nats.lock().await.resume().await;
    }

    /// Crashes the platform's PostgreSQL (`pg_ctl stop -m immediate`).
    ///
    /// # Panics
    /// Without `Postgres::Private`.
    pub async fn stop_postgres(&self) {
        self.postgres
            .as_ref()
            .expect("Postgres::Private")
            .lock()
            .await
            .stop();
    }

    /// Starts the platform's PostgreSQL again (WAL recovery) and waits for logins.
    ///
    /// # Panics
    /// Without `Postgres::Private`.
    pub async fn resume_postgres(&self) {
        self.postgres
            .as_ref()
            .expect("Postgres::Private")
            .lock()
            .await
            .resume()
            .await;
    }

    /// The sum of the Prometheus samples `name` on `service`'s `/metrics` whose labels
    /// include every `labels` pair; `None` when no such sample is exported.
    pub async fn metric(
        &self,
        service: Service,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.admin_url(service)))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        crate::metrics::sample_sum(&text, name, labels)
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

/// Starts every service's process with the operator's env and a fresh database.
async fn start_processes(
    binaries: Vec<(Service, std::path::PathBuf)>,
    ports: &[(Service, u16, u16)],
    shared: &Shared<'_>,
    postgres: Option<&PrivatePostgres>,
    root: &Path,
) -> (Vec<(Service, Mutex<Process>)>, Vec<(Service, String)>) {
    let mut processes = Vec::new();
    let mut admin_urls = Vec::new();
    for (service, binary) in binaries {
        let (_, http, admin) = ports
            .iter()
            .find(|(s, _, _)| *s == service)
            .copied()
            .expect("ports");
        let mut env = env::service_env(service, http, admin, shared);
        if service.persists() {
            let database = match postgres {
                Some(cluster) => cluster.fresh_database().await,
                None => testkit::fresh_postgres_database().await,
            };
            env.push(env::var("TESSERA_DATABASE_URL", database));
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
        admin_urls.push((service, format!("http://127.0.0.1:{admin}")));
    }

    (processes, admin_urls)
}

/// The pepper, one client secret per service that calls identity (the gateway's for its
/// log shipping), and identity's client registry written under `root`, as the operator
/// generates them.
fn client_material(root: &Path) -> ([u8; 32], Vec<(String, String)>) {
    let mut pepper = [0u8; 32];
    aws_lc_rs::rand::fill(&mut pepper).expect("the system random generator");
    let secrets: Vec<(String, String)> = ["logging", "notification", "profile", "gateway"]
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
