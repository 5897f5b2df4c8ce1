//! Service clients (machine identities): from the operator's registry file and from the
//! database, authenticated with a keyed hash of their secret.
//!
//! Registry file format (the contract with the operator), reloaded when it changes:
//!
//! ```json
//! { "clients": [
//!     { "client_id": "gateway", "secret_hash": "<base64url HMAC-SHA-256(pepper, secret)>",
//!       "roles": ["service"] }
//! ] }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use service_kit::{CancellationToken, Pool};

use crate::db;
use crate::secrets::SecretHasher;

/// How often the registry file is checked for changes (see `keys::FILE_POLL`).
const FILE_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
struct RegistryFile {
    clients: Vec<RegistryEntry>,
}

#[derive(Debug, Deserialize)]
struct RegistryEntry {
    client_id: String,
    secret_hash: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// A client as the token endpoint sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
struct Registered {
    secret_hash: Vec<u8>,
    roles: Vec<String>,
}

/// Clients from the registry file (in memory) and the database.
#[derive(Debug)]
pub struct ClientRegistry {
    hasher: SecretHasher,
    file_clients: ArcSwap<HashMap<String, Registered>>,
    pool: Pool,
}

/// Why a registry file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Not readable.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not the expected JSON.
    #[error("{path} is not a client registry: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl ClientRegistry {
    /// A registry with no file clients yet.
    pub fn new(hasher: SecretHasher, pool: Pool) -> Arc<Self> {
        Arc::new(Self {
            hasher,
            file_clients: ArcSwap::default(),
            pool,
        })
    }

    /// The keyed hash of a secret, as stored.
    pub fn hash_secret(&self, secret: &str) -> Vec<u8> {
        self.hasher.hash(secret)
    }

    /// Replaces the file clients with the content of `path`.
    pub fn load_file(&self, path: &std::path::Path) -> Result<usize, RegistryError> {
        let bytes = std::fs::read(path).map_err(|source| RegistryError::Read {
            path: path.into(),
            source,
        })?;
        let clients = parse_registry(&bytes).map_err(|reason| RegistryError::Invalid {
            path: path.into(),
            reason,
        })?;
        let count = clients.len();
        self.file_clients.store(Arc::new(clients));
        Ok(count)
    }

    /// Checks `client_id`/`secret`. File clients win over database clients of the same id.
    /// Unknown ids cost the same keyed hash as known ones.
    pub async fn authenticate(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<Client>, sqlx::Error> {
        if let Some(found) = self.file_clients.load().get(client_id) {
            return Ok(self
                .hasher
                .matches(secret, &found.secret_hash)
                .then(|| Client {
                    client_id: client_id.to_owned(),
                    roles: found.roles.clone(),
                }));
        }
        let stored = db::clients::by_id(&self.pool, client_id).await?;
        let Some(row) = stored.filter(|row| !row.disabled) else {
            let _ = self.hasher.hash(secret);
            return Ok(None);
        };
        Ok(self
            .hasher
            .matches(secret, &row.secret_hash)
            .then_some(Client {
                client_id: row.client_id,
                roles: row.roles,
            }))
    }
}

fn parse_registry(bytes: &[u8]) -> Result<HashMap<String, Registered>, String> {
    let file: RegistryFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut clients = HashMap::new();
    for entry in file.clients {
        if entry.client_id.is_empty() || entry.client_id.len() > 128 {
            return Err("a client_id is empty or longer than 128 characters".into());
        }
        let secret_hash = URL_SAFE_NO_PAD
            .decode(entry.secret_hash.trim_end_matches('='))
            .ok()
            .filter(|h| h.len() == 32)
            .ok_or_else(|| {
                format!(
                    "client {}: secret_hash is not a base64url HMAC-SHA-256",
                    entry.client_id
                )
            })?;
        if clients
            .insert(
                entry.client_id.clone(),
                Registered {
                    secret_hash,
                    roles: entry.roles,
                },
            )
            .is_some()
        {
            return Err(format!("client {} is listed twice", entry.client_id));
        }
    }
    Ok(clients)
}

/// Loads the registry file now (an error stops the start) and reloads it when it changes
/// (an invalid new version is refused and logged; the previous clients stay).
pub fn watch_registry(
    registry: Arc<ClientRegistry>,
    path: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), RegistryError> {
    let count = registry.load_file(&path)?;
    tracing::info!(path = %path.display(), clients = count, "client registry loaded");
    tokio::spawn(async move {
        let mut last = std::fs::read(&path).ok();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(FILE_POLL) => {}
            }
            let current = std::fs::read(&path).ok();
            if current.is_none() || current == last {
                continue;
            }
            match registry.load_file(&path) {
                Ok(count) => {
                    tracing::info!(path = %path.display(), clients = count, "client registry reloaded");
                }
                Err(error) => {
                    tracing::error!(%error, "client registry refused; keeping the previous clients");
                }
            }
            last = current;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_files_with_bad_hashes_or_duplicates_are_refused() {
        let hash = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let ok = format!(
            r#"{{"clients":[{{"client_id":"gw","secret_hash":"{hash}","roles":["service"]}}]}}"#
        );
        assert_eq!(parse_registry(ok.as_bytes()).map(|c| c.len()), Ok(1));
        let dup = format!(
            r#"{{"clients":[{{"client_id":"gw","secret_hash":"{hash}"}},{{"client_id":"gw","secret_hash":"{hash}"}}]}}"#
        );
        assert!(parse_registry(dup.as_bytes()).is_err_and(|e| e.contains("twice")));
        let short = r#"{"clients":[{"client_id":"gw","secret_hash":"abcd"}]}"#;
        assert!(parse_registry(short.as_bytes()).is_err_and(|e| e.contains("secret_hash")));
        assert!(parse_registry(b"[]").is_err());
    }
}
