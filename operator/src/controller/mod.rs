//! The reconciler: from a `Platform` to its children, keys and status.
//!
//! One pass: check the Secrets the spec references (missing → `Degraded`, nothing
//! written but the status); stop at the status when `paused`; create the generated
//! Secrets that do not exist yet (never re-generated); rotate keys (JWKS ConfigMap
//! before the keyset Secret); server-side apply every desired child under one field
//! manager; delete owned children no longer wanted; write the status; requeue at the next
//! key deadline.

mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use service_kit::Clock;
use tessera_keys::Keyset;
use time::OffsetDateTime;

use crate::children::{self, Component, Kind, MANAGER, Materials};
use crate::crd::{Platform, PlatformStatus, SecretKeyRef};
use crate::keys;
use crate::metrics::OperatorMetrics;
use status::Cond;

/// Longest time between two reconciles of a healthy platform (drift repair does not
/// depend on it: owned children trigger reconciles when they change).
const RESYNC: Duration = Duration::from_secs(600);
/// Retry delay while a referenced Secret is missing.
const DEGRADED_RETRY: Duration = Duration::from_secs(30);
/// First and largest retry delays after an error.
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The keyset could not be rotated (bad stored keyset, key generation failure).
    #[error("signing keys: {0}")]
    Keys(#[from] tessera_keys::KeyError),
    /// The stored keyset Secret does not hold a valid keyset.
    #[error("keyset Secret: {0}")]
    Keyset(#[from] tessera_keys::KeysetError),
    /// The platform has no namespace or name.
    #[error("the Platform has no namespace or name")]
    Unnamed,
}

/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Kubernetes Events about platforms.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: OperatorMetrics,
    /// The time source (tests substitute a manual clock).
    pub clock: Arc<dyn Clock>,
    failures: Arc<Mutex<HashMap<String, u32>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context for `client`.
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: OperatorMetrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            clock,
            failures: Arc::default(),
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    async fn event(&self, platform: &Platform, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = self
            .recorder
            .publish(&event, &platform.object_ref(&()))
            .await
        {
            tracing::warn!(%error, reason, "cannot publish an Event");
        }
    }
}

fn key(platform: &Platform) -> String {
    format!(
        "{}/{}",
        platform.namespace().unwrap_or_default(),
        platform.name_any()
    )
}

/// Reconciles one platform (the `Controller`'s reconcile function).
pub async fn reconcile(platform: Arc<Platform>, cx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&platform, &cx).await;
    cx.metrics
        .observe_reconcile(started.elapsed(), result.is_ok());
    if result.is_ok() {
        cx.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(&platform));
    }
    result
}

/// Retries a failed reconcile with exponential backoff (5 s doubling to 5 min).
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature kube's Controller::run expects"
)]
pub fn error_policy(platform: Arc<Platform>, error: &Error, cx: Arc<Context>) -> Action {
    let mut failures = cx.failures.lock().unwrap_or_else(PoisonError::into_inner);
    let count = failures.entry(key(&platform)).or_insert(0);
    let delay = BACKOFF_FIRST
        .saturating_mul(2u32.saturating_pow(*count))
        .min(BACKOFF_MAX);
    *count = count.saturating_add(1);
    tracing::warn!(platform = %key(&platform), %error, retry_in_secs = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

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
async fn missing_references(
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

async fn reconcile_inner(platform: &Platform, cx: &Context) -> Result<Action, Error> {
    let namespace = platform.namespace().ok_or(Error::Unnamed)?;
    if platform.meta().deletion_timestamp.is_some() {
        // Children are owned: the garbage collector removes them.
        return Ok(Action::await_change());
    }
    let client = cx.client.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    // A key policy the API server cannot check (pre-publication derived from the JWKS
    // max-age may exceed the interval) would fail every rotation: report it instead.
    if let Err(error) = keys::policy(platform).validate() {
        return degrade(cx, platform, "InvalidKeyPolicy", error.to_string()).await;
    }
    let missing = missing_references(platform, &secrets).await?;
    if !missing.is_empty() {
        return degrade(cx, platform, "SecretNotFound", missing.join("; ")).await;
    }

    if platform.spec.paused {
        let conditions = vec![Cond::new(
            "Paused",
            true,
            "Paused",
            "spec.paused is true: children and keys are left as they are",
        )];
        patch_status(cx, platform, &conditions, StatusExtra::keep(platform)).await?;
        return Ok(Action::await_change());
    }

    let materials_and_keys = materials(platform, cx, &secrets, &namespace).await?;
    let (materials, keyset, step) = materials_and_keys;

    let desired = children::desired(platform, &materials);
    apply_children(&client, &namespace, &desired).await?;
    prune(&client, platform, &namespace, &desired).await?;

    let (conditions, extra) = running_status(platform, &client, &namespace, &keyset, &step).await?;
    patch_status(cx, platform, &conditions, extra).await?;

    let until_deadline = (step.rotation.next_deadline - cx.now()).max(time::Duration::SECOND);
    let wait = Duration::try_from(until_deadline)
        .unwrap_or(RESYNC)
        .min(RESYNC);
    Ok(Action::requeue(wait))
}

/// Conditions and key fields of a platform whose children are applied.
async fn running_status(
    platform: &Platform,
    client: &Client,
    namespace: &str,
    keyset: &Keyset,
    step: &keys::Step,
) -> Result<(Vec<Cond>, StatusExtra), Error> {
    // Status: components from Deployment availability.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let list = deployments
        .list(&ListParams::default().labels(&children::children_selector(platform)))
        .await?;
    let mut conditions = Vec::new();
    let mut not_ready = Vec::new();
    for component in Component::all(platform) {
        let name = format!("{}-{}", platform.name_any(), component.name());
        let available = list
            .items
            .iter()
            .find(|d| d.name_any() == name)
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Available" && c.status == "True")
            });
        if !available {
            not_ready.push(component.name());
        }
        conditions.push(if available {
            Cond::new(
                &component.condition_type(),
                true,
                "Available",
                format!("Deployment {name} is available"),
            )
        } else {
            Cond::new(
                &component.condition_type(),
                false,
                "Unavailable",
                format!("Deployment {name} is not available yet"),
            )
        });
    }
    let ready = if not_ready.is_empty() {
        Cond::new(
            "Ready",
            true,
            "AllComponentsAvailable",
            "every component is available",
        )
    } else {
        Cond::new(
            "Ready",
            false,
            "ComponentsUnavailable",
            format!("waiting for: {}", not_ready.join(", ")),
        )
    };
    conditions.insert(0, ready);
    let rotating = keyset.next().map(|next| next.kid.clone());
    conditions.push(match &rotating {
        Some(kid) => Cond::new(
            "KeysRotating",
            true,
            "NextKeyPublished",
            format!("key {kid} is published and will start signing"),
        ),
        None => Cond::new(
            "KeysRotating",
            false,
            "Stable",
            "no key is waiting to take over",
        ),
    });
    conditions.push(Cond::new(
        "Degraded",
        false,
        "AsExpected",
        "every referenced Secret exists",
    ));
    conditions.push(Cond::new(
        "Paused",
        false,
        "Reconciling",
        "the operator manages this platform",
    ));
    let handled = step.handled_request.clone().or_else(|| {
        platform
            .status
            .as_ref()
            .and_then(|s| s.handled_rotation_request.clone())
    });
    let extra = StatusExtra {
        active_key: keyset.active().map(|k| k.kid.clone()),
        keys: keys::statuses(keyset),
        next_key_change: Some(keys::format_time(step.rotation.next_deadline)),
        handled_rotation_request: handled,
    };
    Ok((conditions, extra))
}

/// Reports a spec the operator cannot act on: `Degraded=True`, `Ready=False`, a Warning
/// Event the first time; nothing else is written. Retried every 30 s (a Secret may be
/// created meanwhile; a spec change triggers a reconcile anyway).
async fn degrade(
    cx: &Context,
    platform: &Platform,
    reason: &str,
    message: String,
) -> Result<Action, Error> {
    let was_degraded = is_true(platform, "Degraded");
    let conditions = vec![
        Cond::new("Ready", false, "Degraded", message.clone()),
        Cond::new("Degraded", true, reason, message.clone()),
    ];
    patch_status(cx, platform, &conditions, StatusExtra::keep(platform)).await?;
    if !was_degraded {
        cx.event(platform, EventType::Warning, reason, message)
            .await;
    }
    Ok(Action::requeue(DEGRADED_RETRY))
}

fn is_true(platform: &Platform, type_: &str) -> bool {
    platform.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

/// Creates `secret` unless it exists; returns the stored one. Generated Secrets are never
/// updated: regenerating keys or credentials would break tokens and running pods.
async fn create_once(secrets: &Api<Secret>, secret: Secret) -> Result<Secret, Error> {
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
async fn materials(
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
        let secret = keys::keyset_secret(platform, &keyset);
        if stored.is_none() {
            create_once(secrets, secret).await?;
        } else {
            secrets
                .patch(&keyset_name, &apply_params(), &Patch::Apply(&secret))
                .await?;
        }
        for change in &step.rotation.changes {
            cx.metrics.key_changed(change);
            let from = change.from.map_or("none".to_owned(), |s| s.to_string());
            let to = change.to.map_or("removed".to_owned(), |s| s.to_string());
            cx.event(
                platform,
                EventType::Normal,
                "SigningKeyChanged",
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

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

async fn apply_children(
    client: &Client,
    namespace: &str,
    desired: &[children::Child],
) -> Result<(), Error> {
    for kind in Kind::ALL {
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        for child in desired.iter().filter(|c| c.kind == kind) {
            api.patch(&child.name, &apply_params(), &Patch::Apply(&child.object))
                .await?;
        }
    }
    Ok(())
}

/// Deletes children of this platform (by label and owner) that are no longer desired.
async fn prune(
    client: &Client,
    platform: &Platform,
    namespace: &str,
    desired: &[children::Child],
) -> Result<(), Error> {
    let uid = platform.uid();
    let generated = children::generated_secret_names(platform);
    let selector = children::children_selector(platform);
    for kind in Kind::ALL {
        let wanted: BTreeSet<&str> = desired
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.name.as_str())
            .chain(
                generated
                    .iter()
                    .map(String::as_str)
                    .filter(|_| kind == Kind::Secret),
            )
            .collect();
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let existing = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await?;
        for object in existing.items {
            let name = object.name_any();
            let owned = object
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref());
            if owned && !wanted.contains(name.as_str()) {
                tracing::info!(kind = ?kind, %name, "deleting a child no longer wanted");
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Ok(())
}

/// Status fields besides conditions.
struct StatusExtra {
    active_key: Option<String>,
    keys: Vec<crate::crd::KeyStatus>,
    next_key_change: Option<String>,
    handled_rotation_request: Option<String>,
}

impl StatusExtra {
    fn keep(platform: &Platform) -> Self {
        let status = platform.status.clone().unwrap_or_default();
        Self {
            active_key: status.active_key,
            keys: status.keys,
            next_key_change: status.next_key_change,
            handled_rotation_request: status.handled_rotation_request,
        }
    }
}

async fn patch_status(
    cx: &Context,
    platform: &Platform,
    conditions: &[Cond],
    extra: StatusExtra,
) -> Result<(), Error> {
    let namespace = platform.namespace().ok_or(Error::Unnamed)?;
    let now = Timestamp::from_second(cx.now().unix_timestamp()).unwrap_or(Timestamp::UNIX_EPOCH);
    let generation = platform.meta().generation;
    let status = PlatformStatus {
        observed_generation: generation,
        conditions: status::merge(platform.status.as_ref(), conditions, generation, now),
        gateway_url: Some(children::gateway_url(platform)),
        active_key: extra.active_key,
        keys: extra.keys,
        next_key_change: extra.next_key_change,
        handled_rotation_request: extra.handled_rotation_request,
    };
    let api: Api<Platform> = Api::namespaced(cx.client.clone(), &namespace);
    let body = json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "status": status,
    });
    api.patch_status(&platform.name_any(), &apply_params(), &Patch::Apply(&body))
        .await?;
    Ok(())
}
