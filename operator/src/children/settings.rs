//! What each component's container is told: env settings, Secret env vars and volumes,
//! per the component's contract (its README and operator/README.md; checked against each
//! service's own flag parser in tests/operator/contract.rs).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource,
    SecretKeySelector, SecretVolumeSource, Volume,
};

use super::{Component, Context};
use crate::crd::{ComponentSpec, SecretKeyRef};

/// Where SQLite files live (a PersistentVolumeClaim).
const DATA_DIR: &str = "/var/lib/tessera";
/// Where identity's keyset Secret is mounted (as a directory: Secret updates reach it).
const KEYSET_DIR: &str = "/var/run/tessera/keyset";
/// Where identity's client registry Secret is mounted.
const CLIENTS_DIR: &str = "/var/run/tessera/clients";
/// Where the gateway's routes ConfigMap is mounted.
const ROUTES_DIR: &str = "/etc/tessera/routes";

/// A container env var taken from a Secret key (never written into a ConfigMap).
fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// What a component's container gets: plain settings (its env ConfigMap), secret env
/// vars, and volumes.
pub(crate) struct Settings {
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) secret_env: Vec<EnvVar>,
    pub(crate) volumes: Vec<(Volume, String)>,
}

fn nats_url(cx: &Context<'_>) -> String {
    cx.platform
        .spec
        .events
        .nats_url
        .clone()
        .unwrap_or_else(|| format!("nats://{}:4222", cx.object_name(&Component::Nats, "")))
}

/// The database URL: a Secret reference for PostgreSQL, otherwise a SQLite file on the
/// component's volume.
fn database(
    cx: &Context<'_>,
    component: &Component,
    spec: &ComponentSpec,
    settings: &mut Settings,
) {
    if let Some(postgres) = spec.storage.as_ref().and_then(|s| s.postgres.as_ref()) {
        settings.secret_env.push(secret_ref_env(
            "TESSERA_DATABASE_URL",
            &postgres.url_secret_ref,
        ));
    } else {
        {
            settings.env.insert(
                "TESSERA_DATABASE_URL".into(),
                format!("sqlite:{DATA_DIR}/{}.db", component.name()),
            );
            settings.volumes.push((
                Volume {
                    name: "data".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: cx.object_name(component, "data"),
                        read_only: None,
                    }),
                    ..Volume::default()
                },
                DATA_DIR.into(),
            ));
        }
    }
}

fn secret_ref_env(name: &str, reference: &SecretKeyRef) -> EnvVar {
    secret_env(name, &reference.name, &reference.key)
}

fn secret_volume(name: &str, secret: String, path: &str) -> (Volume, String) {
    (
        Volume {
            name: name.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        path.to_owned(),
    )
}

/// The contract of each component (its README and operator/README.md).
pub(crate) fn settings(cx: &Context<'_>, component: &Component) -> Settings {
    let platform = cx.platform;
    let identity = &platform.spec.identity;
    let audiences = if identity.audiences.is_empty() {
        "tessera".to_owned()
    } else {
        identity.audiences.join(",")
    };
    let jwks_url = format!("{}/.well-known/jwks.json", cx.url(&Component::Identity));
    let mut settings = Settings {
        env: BTreeMap::from([
            ("TESSERA_LISTEN".into(), "0.0.0.0:8080".into()),
            ("TESSERA_ADMIN_LISTEN".into(), "0.0.0.0:9090".into()),
            ("TESSERA_LOG_FORMAT".into(), "json".into()),
        ]),
        secret_env: Vec::new(),
        volumes: Vec::new(),
    };
    let env = &mut settings.env;
    match component {
        Component::Gateway => {
            env.insert(
                "TESSERA_ROUTES_FILE".into(),
                format!("{ROUTES_DIR}/routes.yaml"),
            );
            env.insert("TESSERA_JWKS_URL".into(), jwks_url);
            env.insert("TESSERA_ISSUER".into(), identity.issuer.clone());
            env.insert("TESSERA_AUDIENCES".into(), audiences);
            let max_age = identity.jwks_max_age_seconds.unwrap_or(300);
            env.insert(
                "TESSERA_JWKS_REFRESH_SECS".into(),
                max_age.max(1).to_string(),
            );
            // Its shipped logs carry a client-credentials token (role `service`).
            service_client(cx, component, &mut settings);
            settings.volumes.push((
                Volume {
                    name: "routes".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: cx.object_name(component, "routes"),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                ROUTES_DIR.into(),
            ));
        }
        Component::Identity => identity_settings(cx, component, audiences, &mut settings),
        _ => {
            env.insert("TESSERA_ISSUER".into(), identity.issuer.clone());
            env.insert("TESSERA_AUDIENCES".into(), audiences);
            env.insert("TESSERA_JWKS_URL".into(), jwks_url);
            env.insert("TESSERA_NATS_URL".into(), nats_url(cx));
            service_client(cx, component, &mut settings);
        }
    }
    extras(cx, component, &mut settings);
    if let Some(spec) = component.spec(platform) {
        database(cx, component, spec, &mut settings);
    }
    settings
}

/// A component's client credentials at identity (`TESSERA_TOKEN_URL`, `TESSERA_CLIENT_ID`,
/// `TESSERA_CLIENT_SECRET` from its generated Secret) and, except for logging itself, the
/// logging endpoint it ships its logs to with that token.
fn service_client(cx: &Context<'_>, component: &Component, settings: &mut Settings) {
    settings.env.insert(
        "TESSERA_TOKEN_URL".into(),
        format!("{}/oauth2/token", cx.url(&Component::Identity)),
    );
    settings
        .env
        .insert("TESSERA_CLIENT_ID".into(), component.name());
    if *component != Component::Logging {
        log_endpoint(cx, settings);
    }
    settings.secret_env.push(secret_env(
        "TESSERA_CLIENT_SECRET",
        &cx.object_name(component, "client"),
        "client_secret",
    ));
}

/// Where every component but logging ships its logs (service-kit's OTLP/HTTP shipping).
fn log_endpoint(cx: &Context<'_>, settings: &mut Settings) {
    settings.env.insert(
        "TESSERA_LOG_ENDPOINT".into(),
        format!("{}/v1/logs", cx.url(&Component::Logging)),
    );
}

/// Identity's settings (services/identity/README.md, operator mode).
fn identity_settings(
    cx: &Context<'_>,
    component: &Component,
    audiences: String,
    settings: &mut Settings,
) {
    let platform = cx.platform;
    let identity = &platform.spec.identity;
    let env = &mut settings.env;
    env.insert("TESSERA_ISSUER".into(), identity.issuer.clone());
    env.insert("TESSERA_AUDIENCES".into(), audiences);
    env.insert("TESSERA_KEYSET_DIR".into(), KEYSET_DIR.into());
    // Identity's outbox (user.registered, audit records) is relayed to the bus.
    env.insert("TESSERA_NATS_URL".into(), nats_url(cx));
    env.insert(
        "TESSERA_CLIENT_REGISTRY".into(),
        format!("{CLIENTS_DIR}/clients.json"),
    );
    // Only the gateway and platform services reach identity (NetworkPolicy).
    env.insert("TESSERA_TRUST_FORWARDED_FOR".into(), "true".into());
    if let Some(ttl) = identity.access_token_ttl_seconds {
        env.insert("TESSERA_ACCESS_TOKEN_TTL_SECS".into(), ttl.to_string());
    }
    if let Some(ttl) = identity.refresh_token_ttl_seconds {
        env.insert("TESSERA_REFRESH_TOKEN_TTL_SECS".into(), ttl.to_string());
    }
    if let Some(max_age) = identity.jwks_max_age_seconds {
        env.insert("TESSERA_JWKS_MAX_AGE_SECS".into(), max_age.to_string());
    }
    if !identity.bootstrap_admins.is_empty() {
        env.insert(
            "TESSERA_BOOTSTRAP_ADMINS".into(),
            identity.bootstrap_admins.join(","),
        );
    }
    // Identity ships its logs with a token it signs for itself: no client, no secret.
    log_endpoint(cx, settings);
    settings.secret_env.push(secret_env(
        "TESSERA_CLIENT_SECRET_PEPPER",
        &super::pepper_secret_name(platform),
        "pepper",
    ));
    settings.volumes.push(secret_volume(
        "keyset",
        super::keyset_secret_name(platform),
        KEYSET_DIR,
    ));
    settings.volumes.push(secret_volume(
        "clients",
        cx.object_name(component, "clients"),
        CLIENTS_DIR,
    ));
}

/// Settings only logging and notification have.
fn extras(cx: &Context<'_>, component: &Component, settings: &mut Settings) {
    let platform = cx.platform;
    match component {
        Component::Logging => {
            // Logging keeps records by whole days (services/logging/README.md): round up,
            // and keep TRACE/DEBUG records no longer than the rest.
            let retention = platform.spec.logging.retention_seconds.unwrap_or(604_800);
            let days = retention.div_ceil(86_400).max(1);
            settings
                .env
                .insert("TESSERA_RETENTION_DAYS".into(), days.to_string());
            settings.env.insert(
                "TESSERA_RETENTION_DEBUG_DAYS".into(),
                days.min(3).to_string(),
            );
        }
        Component::Notification => {
            let notification = &platform.spec.notification;
            if let Some(sender) = &notification.sender {
                settings
                    .env
                    .insert("TESSERA_EMAIL_FROM".into(), sender.clone());
            }
            // Channel preferences are read from profile with the service token.
            settings
                .env
                .insert("TESSERA_PROFILE_URL".into(), cx.url(&Component::Profile));
            for (name, reference) in [
                ("TESSERA_SMTP_URL", &notification.smtp),
                ("TESSERA_SMS_WEBHOOK_URL", &notification.sms),
                ("TESSERA_PUSH_WEBHOOK_URL", &notification.push),
            ] {
                if let Some(reference) = reference {
                    settings.secret_env.push(secret_ref_env(name, reference));
                }
            }
        }
        _ => {}
    }
}
