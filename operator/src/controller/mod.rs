//! The reconciler: from a `Platform` to its children, keys and status.
//!
//! One pass: check the Secrets the spec references (missing → `Degraded`, nothing
//! written but the status); stop at the status when `paused`; create the generated
//! Secrets that do not exist yet (never re-generated) and check those that do (edited
//! into unusable values → `Degraded`, nothing written but the status); rotate keys (JWKS ConfigMap
//! before the keyset Secret); server-side apply every desired child under one field
//! manager; delete owned children no longer wanted; write the status; requeue at the next
//! key deadline.

mod apply;
mod materials;
mod references;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use service_kit::Clock;
use tessera_keys::Keyset;
use time::OffsetDateTime;

use crate::children::{self, Component};
use crate::crd::{Platform, PlatformStatus};
use crate::keys;
use crate::metrics::OperatorMetrics;
use apply::{apply_children, apply_params, prune};
use materials::{generated_secrets, materials};
use references::missing_references;
use status::Cond;

/// Longest time between two reconciles of a healthy platform (drift repair does not
/// depend on it: owned children trigger reconciles when they change).
const RESYNC: Duration = Duration::from_secs(600);
/// Retry delay while the platform is degraded (a referenced Secret missing, a generated
/// one unusable): the Secret may be fixed meanwhile without a spec change.
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

    /// Publishes an Event about `platform`. kube's recorder merges Events with the same
    /// type, reason and action into one series (keeping the first note), so callers that
    /// need every occurrence told apart give each its own `action`.
    async fn event(
        &self,
        platform: &Platform,
        type_: EventType,
        (reason, action): (&str, &str),
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
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

async fn reconcile_inner(platform: &Platform, cx: &Context) -> Result<Action, Error> {
    let namespace = platform.namespace().ok_or(Error::Unnamed)?;
    if platform.meta().deletion_timestamp.is_some() {
        // Children are owned: the garbage collector removes them.
        return Ok(Action::await_change());
    }
    let client = cx.client.clone();
    let Some(fresh) = with_current_status(platform, &client, &namespace).await? else {
        // Deleted meanwhile.
        return Ok(Action::await_change());
    };
    let platform = &fresh;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    // A key policy the API server cannot check (pre-publication derived from the JWKS
    // max-age may exceed the interval), or one stored without the CRD's rules, would
    // fail every rotation or break tokens: report it instead.
    if let Err(error) = keys::checked_policy(platform) {
        return degrade(cx, platform, "InvalidKeyPolicy", error).await;
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

    if let Some(message) = lost_keyset(platform, &secrets).await? {
        return degrade(cx, platform, "KeysetMissing", message).await;
    }

    // Generated Secrets edited by hand into unusable values: report them, and derive
    // nothing (client registry, pod checksums, keys) from them.
    let generated = generated_secrets(platform, &secrets).await?;
    let credentials = match generated.credentials(&namespace) {
        Ok(credentials) => credentials,
        Err(problem) => return degrade(cx, platform, "InvalidGeneratedSecret", problem).await,
    };
    let materials_and_keys = materials(platform, cx, &secrets, &namespace, credentials).await?;
    let (materials, keyset, step) = materials_and_keys;

    let desired = children::desired(platform, &materials);
    apply_children(&client, &namespace, &desired).await?;
    prune(&client, platform, &namespace, &desired).await?;

    let (conditions, extra) = running_status(platform, &client, &namespace, &keyset, &step).await?;
    patch_status(
        cx,
        &without_removed_components(platform, &conditions),
        &conditions,
        extra,
    )
    .await?;

    let until_deadline = (step.rotation.next_deadline - cx.now()).max(time::Duration::SECOND);
    let wait = Duration::try_from(until_deadline)
        .unwrap_or(RESYNC)
        .min(RESYNC);
    Ok(Action::requeue(wait))
}

/// Why the keyset must not be created now, if so: the status lists keys (the platform had
/// a keyset) but the Secret is gone, and no rotation is requested. A new keyset would be
/// the in-place regeneration DESIGN.md §4 rules out: every token signed with the old keys
/// stops verifying, and the new key signs without pre-publication. Restoring the Secret
/// or requesting a rotation (`tessera.dev/rotate-keys`) resolves it.
async fn lost_keyset(platform: &Platform, secrets: &Api<Secret>) -> Result<Option<String>, Error> {
    let listed: Vec<&str> = platform
        .status
        .as_ref()
        .map(|s| s.keys.iter().map(|k| k.kid.as_str()).collect())
        .unwrap_or_default();
    if listed.is_empty() || keys::pending_rotation_request(platform).is_some() {
        return Ok(None);
    }
    let name = children::keyset_secret_name(platform);
    if secrets.get_opt(&name).await?.is_some() {
        return Ok(None);
    }
    Ok(Some(format!(
        "the keyset Secret {name} holding keys {} is missing: restore it, or set the \
         annotation {} to a new value to start a new keyset (tokens signed with the old \
         keys then stop verifying)",
        listed.join(", "),
        crate::crd::ROTATE_KEYS_ANNOTATION
    )))
}

/// `platform` with the status stored now. The controller's cached copy can lag behind
/// the status the previous reconcile wrote (its watch event may not have arrived yet),
/// and a reconcile carries fields over from that status: the key history (a removed key
/// is listed only in the step that removes it) and the handled rotation request (stale,
/// it would force one more rotation). `None` when the platform is gone.
async fn with_current_status(
    platform: &Platform,
    client: &Client,
    namespace: &str,
) -> Result<Option<Platform>, Error> {
    let platforms: Api<Platform> = Api::namespaced(client.clone(), namespace);
    match platforms.get_status(&platform.name_any()).await {
        Ok(current) => Ok(Some(Platform {
            status: current.status,
            ..platform.clone()
        })),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// `platform` without the `<Component>Ready` conditions of components it no longer has
/// (`running` holds one for each it has): the status merge keeps conditions it is not
/// given, which a degraded or paused pass relies on, so a removed onboarded service's
/// condition would otherwise stay forever.
fn without_removed_components(platform: &Platform, running: &[Cond]) -> Platform {
    let mut platform = platform.clone();
    if let Some(status) = platform.status.as_mut() {
        status.conditions.retain(|c| {
            c.type_ == "Ready"
                || !c.type_.ends_with("Ready")
                || running.iter().any(|r| r.type_ == c.type_)
        });
    }
    platform
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
        "every referenced Secret exists and every generated one is usable",
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
        key_history: step.history.clone(),
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
        cx.event(platform, EventType::Warning, (reason, "Reconcile"), message)
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

/// Status fields besides conditions.
struct StatusExtra {
    active_key: Option<String>,
    keys: Vec<crate::crd::KeyStatus>,
    key_history: Vec<crate::crd::RemovedKeyStatus>,
    next_key_change: Option<String>,
    handled_rotation_request: Option<String>,
}

impl StatusExtra {
    fn keep(platform: &Platform) -> Self {
        let status = platform.status.clone().unwrap_or_default();
        Self {
            active_key: status.active_key,
            keys: status.keys,
            key_history: status.key_history,
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
        key_history: extra.key_history,
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
