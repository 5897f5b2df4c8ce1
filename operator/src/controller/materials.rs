//! The material children depend on: generated Secrets (created once, checked before use)
//! and the keyset (rotated, JWKS published before the keyset).

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

/// The generated Secrets components read as they are stored: identity's pepper and each
/// client Secret (component name first).
pub(super) struct GeneratedSecrets {
    pepper: Secret,
    clients: Vec<(String, Secret)>,
}

/// The values read from [`GeneratedSecrets`], checked.
pub(super) struct Credentials {
    pepper: Vec<u8>,
    client_secrets: BTreeMap<String, String>,
}

/// Creates the pepper and client Secrets that do not exist yet and returns them all.
pub(super) async fn generated_secrets(
    platform: &Platform,
    secrets: &Api<Secret>,
) -> Result<GeneratedSecrets, Error> {
    let pepper = create_once(
        secrets,
        keys::pepper_secret(platform, &keys::random_bytes()),
    )
    .await?;
    let mut clients = Vec::new();
    for component in Component::all(platform)
        .into_iter()
        .filter(Component::has_client)
    {
        let stored = create_once(
            secrets,
            keys::client_secret(platform, &component, &keys::random_client_secret()),
        )
        .await?;
        clients.push((component.name(), stored));
    }
    Ok(GeneratedSecrets { pepper, clients })
}

impl GeneratedSecrets {
    /// The pepper and client secrets, or what is wrong with them: a Secret edited by hand
    /// into a pepper identity refuses (and an HMAC key that matches nothing it computes),
    /// or a client Secret without its value (the client would vanish from the registry).
    /// Messages name the Secret (`namespace/name`) and the key, never the value.
    pub(super) fn credentials(&self, namespace: &str) -> Result<Credentials, String> {
        let mut problems = Vec::new();
        let named = |secret: &Secret| format!("Secret {namespace}/{}", secret.name_any());
        let pepper = match secret_value(&self.pepper, "pepper") {
            None => {
                problems.push(format!("{}: missing key pepper", named(&self.pepper)));
                None
            }
            Some(value) => {
                let decoded = keys::decode_pepper(&value);
                if decoded.is_none() {
                    problems.push(format!(
                        "{}: pepper is not 32 bytes of base64 (restore the value the operator \
                         generated: the secrets of clients in identity's database are hashed with it)",
                        named(&self.pepper)
                    ));
                }
                decoded
            }
        };
        let mut client_secrets = BTreeMap::new();
        for (client, secret) in &self.clients {
            let problem = match secret_value(secret, "client_secret").map(String::from_utf8) {
                None => "missing key client_secret",
                Some(Err(_)) => "client_secret is not UTF-8 text",
                Some(Ok(value)) if value.is_empty() => "client_secret is empty",
                Some(Ok(value)) => {
                    client_secrets.insert(client.clone(), value);
                    continue;
                }
            };
            problems.push(format!(
                "{}: {problem} (restore it, or delete the Secret to have a new one generated)",
                named(secret)
            ));
        }
        match pepper {
            Some(pepper) if problems.is_empty() => Ok(Credentials {
                pepper,
                client_secrets,
            }),
            _ => Err(problems.join("; ")),
        }
    }
}

/// The materials from checked `credentials` and the keyset, rotating keys.
pub(super) async fn materials(
    platform: &Platform,
    cx: &Context,
    secrets: &Api<Secret>,
    namespace: &str,
    credentials: Credentials,
) -> Result<(Materials, Keyset, keys::Step), Error> {
    let Credentials {
        pepper,
        client_secrets,
    } = credentials;
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

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    use super::*;

    fn secret(name: &str, data: &[(&str, &[u8])]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    const PEPPER: &[u8] = b"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

    #[test]
    fn generated_values_as_the_operator_wrote_them_are_used() {
        let generated = GeneratedSecrets {
            pepper: secret("p-identity-pepper", &[("pepper", PEPPER)]),
            clients: vec![(
                "gateway".into(),
                secret("p-gateway-client", &[("client_secret", b"tsc_x")]),
            )],
        };
        let credentials = generated.credentials("ns").unwrap();
        assert_eq!(credentials.pepper, [7; 32]);
        assert_eq!(credentials.client_secrets["gateway"], "tsc_x");
    }

    #[test]
    fn every_unusable_generated_secret_is_named_without_its_value() {
        let generated = GeneratedSecrets {
            // 31 bytes: identity wants exactly 32.
            pepper: secret(
                "p-identity-pepper",
                &[("pepper", b"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw==")],
            ),
            clients: vec![
                (
                    "gateway".into(),
                    secret("p-gateway-client", &[("client_id", b"gateway")]),
                ),
                (
                    "logging".into(),
                    secret("p-logging-client", &[("client_secret", b"")]),
                ),
                (
                    "profile".into(),
                    secret("p-profile-client", &[("client_secret", b"\xff\xfe")]),
                ),
            ],
        };
        let message = generated.credentials("ns").err().unwrap();
        for expected in [
            "Secret ns/p-identity-pepper: pepper is not 32 bytes of base64",
            "Secret ns/p-gateway-client: missing key client_secret",
            "Secret ns/p-logging-client: client_secret is empty",
            "Secret ns/p-profile-client: client_secret is not UTF-8 text",
        ] {
            assert!(message.contains(expected), "{expected:?} in {message}");
        }
        assert!(!message.contains("BwcH"), "{message}");
        let missing = GeneratedSecrets {
            pepper: secret("p-identity-pepper", &[]),
            clients: Vec::new(),
        };
        assert_eq!(
            missing.credentials("ns").err().unwrap(),
            "Secret ns/p-identity-pepper: missing key pepper"
        );
    }
}
