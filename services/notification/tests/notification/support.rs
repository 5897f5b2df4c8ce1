//! The whole signup flow on loopback for a test: identity (SQLite, with notification's
//! service client), profile and notification (SQLite or PostgreSQL), a private JetStream
//! stream on the test NATS server, a real SMTP server (`tools/smtp-server`, aiosmtpd)
//! and an HTTP recorder standing in for the SMS provider.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http::StatusCode;
use platform_testkit::{ServiceClient, loopback};
use serde_json::{Value, json};
use service_kit::{CancellationToken, SystemClock};
use tessera_events::{Bus, JetStreamBus, NatsConfig};
use testkit::{Mail, Recorder, SmtpServer};

pub(crate) use testkit::{Backend, on_both_backends};

pub(crate) const ISSUER: &str = "http://issuer.test";
pub(crate) const CLIENT: &str = "svc-notification";
pub(crate) const SECRET: &str = "a-service-secret-of-sufficient-length";
pub(crate) const SMS_AUTH: &str = "Bearer sms-provider-secret";

/// Notification's client at identity.
const SERVICE_CLIENT: ServiceClient<'static> = ServiceClient {
    id: CLIENT,
    secret: SECRET,
    roles: &["service"],
};

/// A private stream and subject root on the test NATS server, so tests running at the
/// same time never see each other's events.
pub(crate) fn nats_config(url: &str, service: &str, id: &str) -> NatsConfig {
    let mut config = NatsConfig::new(url, service);
    config.stream = format!("T{id}");
    config.subject_root = format!("t{id}");
    config
}

pub(crate) fn nats_url() -> String {
    std::env::var("TESSERA_TEST_NATS_URL").expect(
        "TESSERA_TEST_NATS_URL is not set: these tests need NATS JetStream (`tools/services up`)",
    )
}

pub(crate) struct Options {
    pub(crate) backend: Backend,
    /// Extra notification flags (one given here replaces the stack's default for it).
    pub(crate) args: Vec<String>,
    /// NATS URL (default: the shared test server).
    pub(crate) nats: Option<String>,
    /// Start notification in this process (false: the test runs the binary itself).
    pub(crate) notification: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            args: Vec::new(),
            nats: None,
            notification: true,
        }
    }
}

pub(crate) struct Stack {
    pub(crate) identity: String,
    pub(crate) profile: String,
    pub(crate) notification: String,
    /// Notification's admin listener (`/metrics`, health); empty like `notification`.
    pub(crate) notification_admin: String,
    pub(crate) smtp: SmtpServer,
    pub(crate) sms: Recorder,
    pub(crate) http: reqwest::Client,
    pub(crate) nats_url: String,
    pub(crate) nats_id: String,
    /// Notification's flags (for starting the binary).
    pub(crate) notification_args: Vec<String>,
    pub(crate) shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Profile on `database_url`, publishing on this test's stream; returns its base URL.
async fn start_profile(
    database_url: String,
    jwks: &str,
    nats_url: &str,
    nats_id: &str,
    shutdown: &CancellationToken,
) -> String {
    let profile_config = tessera_profile::config::Config::try_parse_from([
        "tessera-profile".to_owned(),
        "--database-url".into(),
        database_url,
        "--issuer".into(),
        ISSUER.into(),
        "--jwks-url".into(),
        jwks.to_owned(),
        "--nats-url".into(),
        nats_url.to_owned(),
    ])
    .expect("valid profile config");
    let bus = JetStreamBus::connect(nats_config(nats_url, "profile", nats_id))
        .await
        .expect("bus");
    let runtime = tessera_profile::Runtime {
        clock: Arc::new(SystemClock),
        bus: Bus::JetStream(bus),
    };
    let profile =
        tessera_profile::build(&profile_config, runtime, shutdown).expect("profile builds");
    let (listeners, endpoints) = loopback().await;
    tokio::spawn(profile.service.serve(listeners, shutdown.clone()));
    testkit::wait_until_ready(&endpoints.admin, Duration::from_secs(20)).await;
    endpoints.base
}

/// Notification with `args`, in this process on this test's stream; returns its base and
/// admin URLs.
async fn start_notification(
    args: &[String],
    nats_url: &str,
    nats_id: &str,
    shutdown: &CancellationToken,
) -> (String, String) {
    let config = tessera_notification::config::Config::try_parse_from(args)
        .expect("valid notification config");
    let bus = JetStreamBus::connect(nats_config(nats_url, "notification", nats_id))
        .await
        .expect("bus");
    let runtime = tessera_notification::Runtime {
        clock: Arc::new(SystemClock),
        bus: Bus::JetStream(bus),
    };
    let service =
        tessera_notification::build(&config, runtime, shutdown).expect("notification builds");
    let (listeners, endpoints) = loopback().await;
    tokio::spawn(service.service.serve(listeners, shutdown.clone()));
    testkit::wait_until_ready(&endpoints.admin, Duration::from_secs(20)).await;
    (endpoints.base, endpoints.admin)
}

impl Stack {
    pub(crate) async fn start(options: Options) -> Self {
        testkit::init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let shutdown = CancellationToken::new();
        let nats_url = options.nats.clone().unwrap_or_else(nats_url);
        let nats_id = uuid::Uuid::new_v4().simple().to_string();
        let (identity, _) =
            platform_testkit::start_identity(dir.path(), ISSUER, &[SERVICE_CLIENT], &shutdown)
                .await;
        let jwks = format!("{identity}/.well-known/jwks.json");

        let profile_base = start_profile(
            options.backend.database_url(dir.path(), "profile").await,
            &jwks,
            &nats_url,
            &nats_id,
            &shutdown,
        )
        .await;

        let smtp = SmtpServer::start().await;
        let sms = Recorder::start().await;
        let defaults: Vec<String> = [
            "--database-url",
            &options
                .backend
                .database_url(dir.path(), "notification")
                .await,
            "--issuer",
            ISSUER,
            "--jwks-url",
            &jwks,
            "--nats-url",
            &nats_url,
            "--profile-url",
            &profile_base,
            "--token-url",
            &format!("{identity}/oauth2/token"),
            "--client-id",
            CLIENT,
            "--client-secret",
            SECRET,
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &smtp.port().to_string(),
            "--smtp-tls",
            "none",
            "--email-from",
            "Tessera Tests <tests@tessera.test>",
            "--sms-webhook-url",
            &format!("{}/sms", sms.url()),
            "--sms-webhook-auth",
            &format!("Authorization: {SMS_AUTH}"),
            "--retry-schedule-secs",
            "0.3,0.3,0.3",
            "--preferences-ttl-secs",
            "0",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every default is a flag and its value; a flag in `options.args` replaces it.
        let mut args = vec!["tessera-notification".to_owned()];
        for pair in defaults.chunks(2) {
            if !options.args.contains(&pair[0]) {
                args.extend_from_slice(pair);
            }
        }
        args.extend(options.args.iter().cloned());

        let (notification, notification_admin) = if options.notification {
            start_notification(&args, &nats_url, &nats_id, &shutdown).await
        } else {
            (String::new(), String::new())
        };
        Self {
            identity,
            profile: profile_base,
            notification,
            notification_admin,
            smtp,
            sms,
            http: reqwest::Client::new(),
            nats_url,
            nats_id,
            notification_args: args,
            shutdown,
            _dir: dir,
        }
    }

    pub(crate) async fn on(backend: Backend) -> Self {
        Self::start(Options {
            backend,
            ..Options::default()
        })
        .await
    }

    /// Signs up and logs in a new user; returns (user id, access token).
    pub(crate) async fn user(&self, email: &str) -> (String, String) {
        platform_testkit::new_user(&self.http, &self.identity, email).await
    }

    /// Signs a user up and creates their profile with `profile` as body.
    pub(crate) async fn user_with_profile(&self, email: &str, profile: &Value) -> (String, String) {
        let (id, token) = self.user(email).await;
        let created = self
            .http
            .post(format!("{}/v1/profiles", self.profile))
            .bearer_auth(&token)
            .json(profile)
            .send()
            .await
            .expect("create profile");
        assert_eq!(created.status(), StatusCode::CREATED, "profile of {email}");
        (id, token)
    }

    /// notification's own client-credentials token.
    pub(crate) async fn service_token(&self) -> String {
        platform_testkit::service_token(&self.http, &self.identity, &SERVICE_CLIENT).await
    }

    /// Waits until the SMTP server holds at least `count` messages; returns them.
    pub(crate) async fn mails(&self, count: usize, within: Duration) -> Vec<Mail> {
        testkit::eventually(
            within,
            &format!("{count} emails at the SMTP server"),
            || async {
                let mails = self.smtp.messages();
                (mails.len() >= count).then_some(mails)
            },
        )
        .await
    }

    /// A core NATS subscription to a canonical `tessera.…` subject of this test's stream.
    pub(crate) async fn watch(&self, canonical: &str) -> tessera_events::async_nats::Subscriber {
        let client = tessera_events::async_nats::connect(self.nats_url.as_str())
            .await
            .expect("nats");
        let subject = canonical.replacen("tessera", &format!("t{}", self.nats_id), 1);
        client.subscribe(subject).await.expect("subscribe")
    }
}

/// A profile body.
pub(crate) fn profile(
    name: &str,
    email: &str,
    locale: &str,
    phone: Option<&str>,
    sms: bool,
) -> Value {
    json!({
        "email": email,
        "display_name": name,
        "locale": locale,
        "phone": phone,
        "preferences": { "email": true, "sms": sms, "push": true },
    })
}
