//! Secrets `tessera dev` generates once under the data directory and keeps across
//! restarts: identity's keyset seal and client pepper, notification's client secret, and
//! the client registry built from them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The client id notification uses at identity in the all-in-one process.
pub(super) const NOTIFICATION_CLIENT: &str = "notification";

/// Writes identity's client registry with notification's client (role `service`; its
/// secret and the hashing pepper are generated once under `secrets/`); returns its path.
pub(super) fn write_client_registry(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let pepper = secret_file(&data_dir.join("secrets/identity-client-pepper.key"))?;
    let pepper: [u8; 32] = STANDARD
        .decode(pepper)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("secrets/identity-client-pepper.key is not 32 bytes of base64")?;
    let secret = secret_file(&data_dir.join("secrets/notification-client.secret"))?;
    let hash = tessera_identity::secrets::SecretHasher::new(&pepper).hash(&secret);
    let registry = serde_json::json!({ "clients": [{
        "client_id": NOTIFICATION_CLIENT,
        "secret_hash": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash),
        "roles": ["service"],
    }]});
    let path = data_dir.join("clients.json");
    std::fs::write(&path, registry.to_string())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The base64 of a 32-byte random secret kept in `path` (created with mode 0600 on first
/// use), so restarts keep decrypting what earlier runs stored.
pub(super) fn secret_file(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    let encoded = STANDARD.encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, encoded.as_bytes())?;
    Ok(encoded)
}
