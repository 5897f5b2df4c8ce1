//! The env vars of each service, as the operator's Deployments set them
//! (operator/src/children/settings.rs, /work/coord/operator-env.md), with loopback
//! addresses and temp dirs as mount points. A unit test holds them to the operator's
//! code and golden files.

use std::path::Path;

use base64::Engine as _;

use crate::service::{Options, Service};

/// What every service's settings are derived from.
pub(crate) struct Shared<'a> {
    pub(crate) options: &'a Options,
    pub(crate) gateway_url: &'a str,
    /// Base URLs of the services that run (not the gateway).
    pub(crate) urls: &'a [(Service, String)],
    pub(crate) nats_url: &'a str,
    pub(crate) root: &'a Path,
    pub(crate) pepper: &'a [u8; 32],
    /// `(client_id, secret)` of every service client in identity's registry.
    pub(crate) secrets: &'a [(String, String)],
    /// `smtp://127.0.0.1:<port>` of the private SMTP server (`spec.notification.smtp`).
    pub(crate) smtp_url: &'a str,
    /// Base URL of the HTTP recorder standing in for the SMS and push providers.
    pub(crate) recorder_url: &'a str,
}

impl Shared<'_> {
    fn url(&self, service: Service) -> Option<&str> {
        self.urls
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, url)| url.as_str())
    }

    fn identity(&self) -> &str {
        self.url(Service::Identity).expect("identity runs")
    }

    fn secret(&self, client_id: &str) -> String {
        self.secrets
            .iter()
            .find(|(id, _)| id == client_id)
            .map(|(_, s)| s.clone())
            .expect("a client secret")
    }
}

pub(crate) fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

fn path(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_owned()
}

/// The env vars the operator's Deployment of `service` sets (its env ConfigMap and
/// secret env) except `TESSERA_DATABASE_URL`, which `Platform` adds.
pub(crate) fn service_env(
    service: Service,
    listen: u16,
    admin: u16,
    cx: &Shared<'_>,
) -> Vec<(String, String)> {
    let mut env = vec![
        var("TESSERA_LISTEN", format!("127.0.0.1:{listen}")),
        var("TESSERA_ADMIN_LISTEN", format!("127.0.0.1:{admin}")),
        var("TESSERA_LOG_FORMAT", "json"),
        var("TESSERA_ISSUER", cx.gateway_url.to_owned()),
        var("TESSERA_AUDIENCES", "tessera"),
    ];
    let identity = cx.identity();
    let jwks = var(
        "TESSERA_JWKS_URL",
        format!("{identity}/.well-known/jwks.json"),
    );
    // The operator always deploys logging and points every other service at it; the
    // harness does so only when it runs logging.
    let log_endpoint = cx
        .url(Service::Logging)
        .map(|logging| var("TESSERA_LOG_ENDPOINT", format!("{logging}/v1/logs")));
    let client = |env: &mut Vec<(String, String)>| {
        env.extend([
            var("TESSERA_TOKEN_URL", format!("{identity}/oauth2/token")),
            var("TESSERA_CLIENT_ID", service.name()),
            var("TESSERA_CLIENT_SECRET", cx.secret(service.name())),
        ]);
    };
    match service {
        Service::Gateway => {
            env.extend([
                var(
                    "TESSERA_ROUTES_FILE",
                    path(&cx.root.join("routes/routes.yaml")),
                ),
                jwks,
                var(
                    "TESSERA_JWKS_REFRESH_SECS",
                    cx.options.jwks_max_age_secs.max(1).to_string(),
                ),
            ]);
            // The gateway ships its logs with its own client's token.
            if log_endpoint.is_some() {
                client(&mut env);
            }
        }
        Service::Identity => {
            env.extend([
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
            ]);
            if !cx.options.bootstrap_admins.is_empty() {
                env.push(var(
                    "TESSERA_BOOTSTRAP_ADMINS",
                    cx.options.bootstrap_admins.join(","),
                ));
            }
        }
        Service::Profile | Service::Logging | Service::Notification => {
            env.extend([jwks, var("TESSERA_NATS_URL", cx.nats_url.to_owned())]);
            client(&mut env);
        }
    }
    env.extend(extras(service, cx));
    if service != Service::Logging
        && let Some(endpoint) = log_endpoint
    {
        env.push(endpoint);
        if let Some(records) = cx.options.log_buffer_records {
            env.push(var("TESSERA_LOG_BUFFER_RECORDS", records.to_string()));
        }
    }
    env
}

/// Settings only logging and notification have.
fn extras(service: Service, cx: &Shared<'_>) -> Vec<(String, String)> {
    match service {
        Service::Logging => vec![
            var("TESSERA_RETENTION_DAYS", "7"),
            var("TESSERA_RETENTION_DEBUG_DAYS", "3"),
        ],
        Service::Notification => vec![
            var(
                "TESSERA_PROFILE_URL",
                cx.url(Service::Profile).expect("profile runs").to_owned(),
            ),
            var("TESSERA_EMAIL_FROM", "Tessera <no-reply@tessera.test>"),
            var("TESSERA_SMTP_URL", cx.smtp_url.to_owned()),
            var(
                "TESSERA_SMS_WEBHOOK_URL",
                format!("{}/sms", cx.recorder_url),
            ),
            var(
                "TESSERA_PUSH_WEBHOOK_URL",
                format!("{}/push", cx.recorder_url),
            ),
        ],
        _ => Vec::new(),
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

    /// The operator's golden output for the demo Platform (operator/tests/operator).
    fn golden(service: Service) -> String {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../operator/tests/operator/golden")
            .join(format!("{}.yaml", service.name()));
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }

    fn env_names(text: &str) -> BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|word| word.starts_with("TESSERA_") && word.len() > "TESSERA_".len())
            .map(str::to_owned)
            .collect()
    }

    /// Settings the operator sets only when the Platform asks for them (the demo
    /// Platform of the golden files leaves them out), and the one harness-only knob.
    const CONDITIONAL: [&str; 6] = [
        "TESSERA_BOOTSTRAP_ADMINS",
        "TESSERA_JWKS_MAX_AGE_SECS",
        "TESSERA_SMS_WEBHOOK_URL",
        "TESSERA_PUSH_WEBHOOK_URL",
        "TESSERA_REFRESH_TOKEN_TTL_SECS",
        // Not an operator setting: see `Options::log_buffer_records`.
        "TESSERA_LOG_BUFFER_RECORDS",
    ];

    /// `Shared` settings with placeholder addresses around what a test varies: the
    /// options, the running services' URLs and the registered clients' secrets.
    fn shared<'a>(
        options: &'a Options,
        urls: &'a [(Service, String)],
        secrets: &'a [(String, String)],
    ) -> Shared<'a> {
        Shared {
            options,
            gateway_url: "http://127.0.0.1:1",
            urls,
            nats_url: "nats://127.0.0.1:4222",
            root: Path::new("/tmp/e2e"),
            pepper: &[0; 32],
            secrets,
            smtp_url: "smtp://127.0.0.1:25",
            recorder_url: "http://127.0.0.1:2",
        }
    }

    /// A placeholder URL for every service: `http://127.0.0.1:1/<name>`.
    fn every_service_url() -> Vec<(Service, String)> {
        Service::ALL
            .iter()
            .map(|s| (*s, format!("http://127.0.0.1:1/{}", s.name())))
            .collect()
    }

    #[test]
    fn every_service_gets_the_env_names_the_operator_sets_and_no_others() {
        let secrets: Vec<(String, String)> = Service::ALL
            .iter()
            .map(|s| (s.name().to_owned(), format!("tsc_{}", s.name())))
            .collect();
        let urls = every_service_url();
        let options = Options {
            bootstrap_admins: vec!["admin@example.com".into()],
            log_buffer_records: Some(64),
            ..Options::default()
        };
        let cx = shared(&options, &urls, &secrets);
        let operator = operator_children_source();
        for service in Service::ALL {
            let mut ours: BTreeSet<String> = service_env(service, 1, 2, &cx)
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            // `Platform` adds the database URL for services that persist.
            if service.persists() {
                ours.insert("TESSERA_DATABASE_URL".into());
            }
            let golden = env_names(&golden(service));
            let missing: Vec<_> = golden.difference(&ours).cloned().collect();
            assert!(
                missing.is_empty(),
                "{}: the operator sets {missing:?}",
                service.name()
            );
            let extra: Vec<_> = ours
                .difference(&golden)
                .filter(|name| !CONDITIONAL.contains(&name.as_str()))
                .collect();
            assert!(
                extra.is_empty(),
                "{}: the operator's golden Deployment does not set {extra:?}",
                service.name()
            );
            for name in &ours {
                assert!(
                    operator.contains(&format!("\"{name}\""))
                        || name == "TESSERA_LOG_BUFFER_RECORDS",
                    "{}: {name} is not an env var the operator sets",
                    service.name()
                );
            }
        }
    }

    /// `(name, value)` of each `TESSERA_*` entry of the golden env ConfigMap.
    fn golden_values(service: Service) -> Vec<(String, String)> {
        golden(service)
            .lines()
            .filter_map(|line| {
                let (name, value) = line.trim().split_once(": ")?;
                name.starts_with("TESSERA_")
                    .then(|| (name.to_owned(), value.trim_matches('"').to_owned()))
            })
            .collect()
    }

    #[test]
    fn urls_of_other_components_point_where_the_operators_do() {
        let urls = every_service_url();
        let secrets: Vec<(String, String)> = Service::ALL
            .iter()
            .map(|s| (s.name().to_owned(), "tsc_x".to_owned()))
            .collect();
        let options = Options::default();
        let cx = shared(&options, &urls, &secrets);
        let mut checked = 0;
        for service in Service::ALL {
            let ours = service_env(service, 1, 2, &cx);
            for (name, value) in golden_values(service) {
                // `http://demo-<component>:8080<path>`: ours must be that component's URL
                // with the same path.
                let Some(rest) = value.strip_prefix("http://demo-") else {
                    continue;
                };
                let (host, path) = rest.split_once(":8080").expect("a Service URL");
                let component = Service::ALL
                    .into_iter()
                    .find(|s| s.name() == host)
                    .expect("a platform component");
                let expected = format!("http://127.0.0.1:1/{}{path}", component.name());
                let actual = ours.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
                assert_eq!(actual, Some(&expected), "{}: {name}", service.name());
                checked += 1;
            }
        }
        assert!(checked >= 13, "{checked} URLs checked");
    }

    #[test]
    fn without_logging_no_service_is_told_to_ship_logs() {
        let urls = vec![
            (Service::Identity, "http://127.0.0.1:3".to_owned()),
            (Service::Profile, "http://127.0.0.1:4".to_owned()),
        ];
        let secrets = vec![("profile".to_owned(), "tsc_p".to_owned())];
        let options = Options::default();
        let cx = shared(&options, &urls, &secrets);
        for service in [Service::Gateway, Service::Identity, Service::Profile] {
            let env = service_env(service, 1, 2, &cx);
            assert!(
                env.iter().all(|(name, _)| name != "TESSERA_LOG_ENDPOINT"),
                "{}: {env:?}",
                service.name()
            );
        }
    }
}
