//! The Secrets a spec references, and which of them are missing.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::Error;
use crate::children::Component;
use crate::crd::{Platform, SecretKeyRef};

/// Secret references of the spec, each with the field that names it.
fn secret_references(platform: &Platform) -> Vec<(String, Option<String>, String)> {
    let spec = &platform.spec;
    let mut refs = Vec::new();
    let mut key_ref =
        |field: String, r: &SecretKeyRef| refs.push((r.name.clone(), Some(r.key.clone()), field));
    for component in [
        Component::Identity,
        Component::Logging,
        Component::Notification,
        Component::Profile,
    ] {
        if let Some(postgres) = component
            .spec(platform)
            .and_then(|s| s.storage.as_ref())
            .and_then(|s| s.postgres.as_ref())
        {
            let field = match component {
                Component::Profile => "spec.profile.storage.postgres.urlSecretRef".to_owned(),
                _ => format!("spec.{}.storage.postgres.urlSecretRef", component.name()),
            };
            key_ref(field, &postgres.url_secret_ref);
        }
    }
    let notification = &spec.notification;
    for (channel, reference) in [
        ("smtp", &notification.smtp),
        ("sms", &notification.sms),
        ("push", &notification.push),
    ] {
        if let Some(reference) = reference {
            key_ref(format!("spec.notification.{channel}"), reference);
        }
    }
    if let Some(tls) = &spec.gateway.tls_secret_name {
        refs.push((tls.clone(), None, "spec.gateway.tlsSecretName".into()));
    }
    refs
}

/// Which referenced Secrets (or keys) are missing, as human messages.
pub(super) async fn missing_references(
    platform: &Platform,
    secrets: &Api<Secret>,
) -> Result<Vec<String>, Error> {
    let mut missing = Vec::new();
    for (name, key, field) in secret_references(platform) {
        match secrets.get_opt(&name).await? {
            None => missing.push(format!("Secret {name:?} ({field}) does not exist")),
            Some(secret) => {
                if let Some(key) = key {
                    let has = secret.data.as_ref().is_some_and(|d| d.contains_key(&key));
                    if !has {
                        missing.push(format!("Secret {name:?} ({field}) has no key {key:?}"));
                    }
                }
            }
        }
    }
    Ok(missing)
}
