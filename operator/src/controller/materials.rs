//! The material children depend on: generated Secrets (created once) and the keyset
//! (rotated, JWKS published before the keyset).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PostParams};
use kube::runtime::events::EventType;
use tessera_keys::Keyset;

use super::apply::apply_params;
use super::{Context, Error};
use crate::children::{self, Component, Kind, MANAGER, Materials};
use crate::crd::Platform;
use crate::keys;

/// Creates `secret` unless it exists; returns the stored one. Generated Secrets are never
/// updated: regenerating keys or credentials would break tokens and running pods.
pub(super) async fn create_once(secrets: &Api<Secret>, secret: Secret) -> Result<Secret, Error> {
    let name = secret.name_any();
    if let Some(existing) = secrets.get_opt(&name).await? {
        return Ok(existing);
    }
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    match secrets.create(&params, &secret).await {
        Ok(created) => Ok(created),
        // Created meanwhile (another reconcile): keep that one.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(secrets.get(&name).await?),
        Err(error) => Err(error.into()),
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref()?.get(key).map(|v| v.0.clone())
}

/// The pepper, client secrets and keyset, creating what is missing and rotating keys.
pub(super) async fn materials(
    platform: &Platform,
    cx: &Context,
    secrets: &Api<Secret>,
    namespace: &str,
) -> Result<(Materials, Keyset, keys::Step), Error> {
    let pepper_secret = create_once(
        secrets,
        keys::pepper_secret(platform, &keys::random_bytes()),
    )
    .await?;
    let pepper = secret_value(&pepper_secret, "pepper")
        .and_then(|v| keys::decode_pepper(&v))
        .unwrap_or_default();
    let mut client_secrets = BTreeMap::new();
    for component in Component::all(platform)
        .into_iter()
        .filter(Component::has_client)
    {
        let stored = create_once(
            secrets,
            keys::client_secret(platform, &component, &keys::random_client_secret()),
        )
        .await?;
        if let Some(value) = secret_value(&stored, "client_secret") {
            client_secrets.insert(
                component.name(),
                String::from_utf8_lossy(&value).into_owned(),
            );
        }
    }

    let keyset_name = children::keyset_secret_name(platform);
    let stored = secrets.get_opt(&keyset_name).await?;
    let current = match stored.as_ref().and_then(|s| secret_value(s, "keyset.json")) {
        Some(json) => Keyset::from_json(&json)?,
        None => Keyset::empty(),
    };
    let step = keys::step(platform, &current, cx.now(), &mut tessera_keys::generate)?;
    let keyset = step.rotation.keyset.clone();
    let jwks = keys::jwks_json(&keyset);
    if !step.rotation.is_unchanged() || stored.is_none() {
        // Publish first: verifiers must know a key before anything is signed with it.
        let config_maps: Api<ConfigMap> = Api::namespaced(cx.client.clone(), namespace);
        let materials_now = Materials {
            jwks_json: jwks.clone(),
            client_secrets: BTreeMap::new(),
            pepper: Vec::new(),
        };
        let jwks_child = children::desired(platform, &materials_now)
            .into_iter()
            .find(|c| {
                c.kind == Kind::ConfigMap && c.name == children::jwks_config_map_name(platform)
            })
            .expect("the JWKS ConfigMap is always desired");
        config_maps
            .patch(
                &jwks_child.name,
                &apply_params(),
                &Patch::Apply(&jwks_child.object),
            )
            .await?;
        let mut secret = keys::keyset_secret(platform, &keyset);
        // Written only over the version it was computed from (a 409 otherwise, and the
        // retry starts from the stored keyset): another writer (a replica that still
        // believes it leads, or one paused mid-reconcile) may have rotated meanwhile, and
        // a stale keyset written over it would drop the key identity signs with.
        if let Some(stored) = &stored {
            secret
                .metadata
                .resource_version
                .clone_from(&stored.metadata.resource_version);
            secrets
                .patch(&keyset_name, &apply_params(), &Patch::Apply(&secret))
                .await?;
        } else {
            // Not `create_once`: a keyset created meanwhile is not the one published
            // above; fail, and the retry publishes and uses the stored one.
            let params = PostParams {
                field_manager: Some(MANAGER.into()),
                ..PostParams::default()
            };
            secrets.create(&params, &secret).await?;
        }
        for change in &step.rotation.changes {
            cx.metrics.key_changed(change);
            let from = change.from.map_or("none".to_owned(), |s| s.to_string());
            let to = change.to.map_or("removed".to_owned(), |s| s.to_string());
            // One Event per key and state: a key change is rare and each one matters.
            cx.event(
                platform,
                EventType::Normal,
                (
                    "SigningKeyChanged",
                    &format!("RotateKey/{}/{to}", change.kid),
                ),
                format!("key {}: {from} -> {to}", change.kid),
            )
            .await;
        }
    }
    Ok((
        Materials {
            jwks_json: jwks,
            client_secrets,
            pepper,
        },
        keyset,
        step,
    ))
}
