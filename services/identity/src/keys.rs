//! Signing keys at run time: the active signer and the published JWKS, swapped atomically,
//! fed either from the operator's mounted keyset file or, standalone, from the database
//! where identity rotates its own keyset with the shared state machine (DESIGN.md §4).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use service_kit::{CancellationToken, Clock, Pool};
use tessera_auth::{StaticJwks, Verifier};
use tessera_keys::{KeyInfo, KeyPolicy, Keyset, SigningKey, rotate, sealed};

use crate::audit::AuditLog;
use crate::db;
use crate::events::{AuditAction, OutboxEvent};

/// File name of the keyset inside the mounted directory.
pub const KEYSET_FILE: &str = "keyset.json";
/// How often the mounted file is checked. Kubernetes updates a mounted Secret by swapping
/// a symlink, which file watchers see unreliably; reading a small file every two seconds
/// is cheap and always right.
const FILE_POLL: Duration = Duration::from_secs(2);

/// What is published now.
#[derive(Debug, Default)]
struct Published {
    signer: Option<SigningKey>,
    jwks_json: Arc<str>,
    infos: Vec<KeyInfo>,
}

/// The current keys. Readers never block: the set is swapped whole.
#[derive(Debug)]
pub struct KeyManager {
    published: ArcSwap<Published>,
    /// Identity's own verifier reads keys from here, and is refreshed on every change.
    verifier_keys: Arc<StaticJwks>,
    verifier: Arc<Verifier>,
}

impl KeyManager {
    /// An empty manager (not ready until a keyset is installed).
    pub fn new(verifier_keys: Arc<StaticJwks>, verifier: Arc<Verifier>) -> Arc<Self> {
        Arc::new(Self {
            published: ArcSwap::default(),
            verifier_keys,
            verifier,
        })
    }

    /// Makes `keyset` current: its active key signs, all its keys are published.
    pub fn install(&self, keyset: &Keyset) -> Result<(), tessera_keys::KeyError> {
        let signer = keyset.active().map(SigningKey::from_key).transpose()?;
        let jwks = keyset.jwks();
        let jwks_json: Arc<str> = serde_json::to_string(&jwks).unwrap_or_default().into();
        self.verifier_keys.set(jwks);
        self.published.store(Arc::new(Published {
            signer,
            jwks_json,
            infos: keyset.infos(),
        }));
        let verifier = self.verifier.clone();
        tokio::spawn(async move {
            if let Err(error) = verifier.refresh().await {
                tracing::warn!(%error, "own verifier did not take the new keys");
            }
        });
        Ok(())
    }

    /// The key that signs new tokens, once one is installed.
    pub fn signer(&self) -> Option<SigningKey> {
        self.published.load().signer.clone()
    }

    /// The JWKS document.
    pub fn jwks_json(&self) -> Arc<str> {
        self.published.load().jwks_json.clone()
    }

    /// Key metadata for `/debug/keys` (no private material).
    pub fn infos(&self) -> Vec<KeyInfo> {
        self.published.load().infos.clone()
    }

    /// Whether a signing key is installed.
    pub fn is_ready(&self) -> bool {
        self.published.load().signer.is_some()
    }
}

/// Loads `dir/keyset.json` now and whenever its content changes. An invalid file is
/// refused with a log line and the previous keys stay.
pub fn watch_mounted(manager: Arc<KeyManager>, dir: &std::path::Path, shutdown: CancellationToken) {
    let path = dir.join(KEYSET_FILE);
    tokio::spawn(async move {
        let mut last: Option<Vec<u8>> = None;
        loop {
            match tokio::fs::read(&path).await {
                Ok(bytes) if last.as_ref() != Some(&bytes) => {
                    match Keyset::from_json(&bytes)
                        .map_err(|e| e.to_string())
                        .and_then(|k| manager.install(&k).map_err(|e| e.to_string()).map(|()| k))
                    {
                        Ok(keyset) => tracing::info!(
                            path = %path.display(),
                            active = keyset.active().map(|k| k.kid.as_str()),
                            keys = keyset.keys.len(),
                            "keyset loaded"
                        ),
                        Err(error) => tracing::error!(
                            path = %path.display(), %error, "keyset file refused; keeping the previous keys"
                        ),
                    }
                    last = Some(bytes);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot read the keyset file");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(FILE_POLL) => {}
            }
        }
    });
}

/// Standalone mode: identity owns its keyset, sealed in the database.
#[derive(Debug, Clone)]
pub struct Standalone {
    pub manager: Arc<KeyManager>,
    pub pool: Pool,
    pub seal_key: [u8; 32],
    pub policy: KeyPolicy,
    pub clock: Arc<dyn Clock>,
    pub audit: AuditLog,
}

/// Why a standalone rotation step failed.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The stored keyset could not be decrypted: wrong `TESSERA_KEYSET_ENCRYPTION_KEY`.
    #[error("the stored keyset cannot be decrypted with the configured encryption key")]
    Unseal,
    /// The stored keyset is invalid.
    #[error("stored keyset: {0}")]
    Keyset(#[from] tessera_keys::KeysetError),
    /// Key generation or loading failed.
    #[error("keys: {0}")]
    Key(#[from] tessera_keys::KeyError),
}

impl Standalone {
    /// One step: load the stored keyset, rotate it as the policy says, store the result
    /// if anything changed (losing gracefully to a concurrent replica), and install it.
    /// Returns when the next step is due.
    pub async fn step(&self) -> Result<time::OffsetDateTime, StandaloneError> {
        loop {
            let stored = db::keyset::load(&self.pool).await?;
            let (generation, keyset) = match &stored {
                Some((generation, sealed_bytes)) => {
                    let plain = sealed::open(sealed_bytes, &self.seal_key)
                        .map_err(|_| StandaloneError::Unseal)?;
                    (Some(*generation), Keyset::from_json(&plain)?)
                }
                None => (None, Keyset::empty()),
            };
            let now = self.clock.now();
            let rotation = rotate(
                &keyset,
                &self.policy,
                now,
                false,
                &mut tessera_keys::generate,
            )?;
            if rotation.changes.is_empty() {
                self.manager.install(&keyset)?;
                return Ok(rotation.next_deadline);
            }
            let sealed_bytes = sealed::seal(&rotation.keyset.to_json(), &self.seal_key);
            if !db::keyset::compare_and_swap(
                &self.pool,
                generation,
                &sealed_bytes,
                now.unix_timestamp(),
            )
            .await?
            {
                continue; // another replica rotated first: start over from its result
            }
            self.manager.install(&rotation.keyset)?;
            for change in &rotation.changes {
                let state = |s: Option<tessera_keys::KeyState>| {
                    s.map_or("none", tessera_keys::KeyState::as_str)
                };
                tracing::info!(kid = %change.kid, from = state(change.from), to = state(change.to), "signing key state changed");
                let details = serde_json::json!({ "from": change.from, "to": change.to });
                self.audit.record_in_background(OutboxEvent::audit(
                    AuditAction::KeyStateChanged,
                    &change.kid,
                    &details,
                    now,
                ));
            }
            return Ok(rotation.next_deadline);
        }
    }

    /// Runs [`Self::step`] until shutdown: at each deadline, and at least every
    /// `check_every` to pick up other replicas' rotations. Failures are retried.
    pub fn spawn(self, check_every: Duration, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                let wait = match self.step().await {
                    Ok(deadline) => {
                        let until = deadline - self.clock.now();
                        Duration::try_from(until)
                            .unwrap_or(Duration::ZERO)
                            .clamp(Duration::from_millis(10), check_every)
                    }
                    Err(error) => {
                        tracing::error!(%error, "key rotation step failed; retrying");
                        check_every.min(Duration::from_secs(5))
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }
}
