//! The mounted files the operator writes, in the same formats: identity's keyset
//! document (rotated with `tessera_keys::rotate` and written atomically, like a Secret
//! update reaching a mounted directory), identity's client registry, and the gateway's
//! routes file (operator/src/children/config.rs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_keys::{KeyPolicy, Keyset, Rotation};
use time::OffsetDateTime;

/// Identity's `<keyset-dir>/keyset.json`, owned by the harness as the operator owns the
/// keyset Secret.
#[derive(Debug)]
pub struct KeysetFile {
    path: PathBuf,
    keyset: Keyset,
    policy: KeyPolicy,
}

impl KeysetFile {
    /// Bootstraps a keyset (an empty set rotated once: one active key) under `policy`
    /// and writes it to `<dir>/keyset.json`.
    ///
    /// # Panics
    /// When the policy is invalid or the file cannot be written.
    pub fn bootstrap(dir: &Path, policy: KeyPolicy) -> Self {
        let mut file = Self {
            path: dir.join("keyset.json"),
            keyset: Keyset::empty(),
            policy,
        };
        let rotation = file.rotate(OffsetDateTime::now_utc());
        assert!(rotation.activated().is_some(), "bootstrap activates a key");
        file
    }

    /// The keyset as last written.
    pub fn keyset(&self) -> &Keyset {
        &self.keyset
    }

    /// One step of the operator's rotation (never forced): `tessera_keys::rotate` on the
    /// current document at `now`; when something changed, the new document is written
    /// atomically (a temp file in the same directory, then a rename).
    ///
    /// # Panics
    /// When rotation or the write fails.
    pub fn rotate(&mut self, now: OffsetDateTime) -> Rotation {
        let rotation = tessera_keys::rotate(
            &self.keyset,
            &self.policy,
            now,
            false,
            &mut tessera_keys::generate,
        )
        .expect("rotate the keyset");
        if !rotation.is_unchanged() {
            let dir = self.path.parent().expect("the keyset file has a directory");
            let temp = dir.join(format!(".keyset.json.{}", uuid::Uuid::new_v4().simple()));
            std::fs::write(&temp, rotation.keyset.to_json()).expect("write the keyset");
            std::fs::rename(&temp, &self.path).expect("rename the keyset into place");
            self.keyset = rotation.keyset.clone();
        }
        rotation
    }
}

/// A client secret in identity's format: `tsc_` + 256 random bits, base64url.
pub fn random_client_secret() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator");
    format!("tsc_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Identity's client registry: each `(client_id, secret)` with the base64url
/// HMAC-SHA-256 of its secret under `pepper`, role `service`.
pub fn client_registry_json(pepper: &[u8; 32], clients: &[(String, String)]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pepper);
    let clients: Vec<serde_json::Value> = clients
        .iter()
        .map(|(client_id, secret)| {
            let hash = aws_lc_rs::hmac::sign(&key, secret.as_bytes());
            serde_json::json!({
                "client_id": client_id,
                "secret_hash": URL_SAFE_NO_PAD.encode(hash.as_ref()),
                "roles": ["service"],
            })
        })
        .collect();
    let mut json = serde_json::to_string_pretty(&serde_json::json!({ "clients": clients }))
        .expect("JSON serializes");
    json.push('\n');
    json
}

/// Identity's endpoints routed at the issuer's root, as the operator routes them.
const IDENTITY_ROUTES: [(&str, &str); 7] = [
    ("discovery", "/.well-known/"),
    ("oauth", "/oauth2/"),
    ("signup", "/v1/signup"),
    ("login", "/v1/login"),
    ("logout", "/v1/logout"),
    ("me", "/v1/me"),
    ("identity-admin", "/v1/admin/"),
];

/// The gateway's routes file as the operator writes it: identity's endpoints (login
/// limited to 10 a minute per client address), `/logging/` (role `admin`), and
/// `/notification/` and `/profile/` (authenticated), each prefix replaced by `/`.
/// `upstreams` maps a component name to its URL; absent components get no route.
pub fn routes_yaml(identity: &str, upstreams: &[(&str, String)]) -> String {
    let mut yaml =
        String::from("# Written like tessera-operator writes it.\nversion: 1\nroutes:\n");
    for (name, prefix) in IDENTITY_ROUTES {
        let _ = write!(
            yaml,
            "- name: {name}\n  match:\n    prefix: {prefix}\n  upstreams:\n  - {identity}\n  auth: public\n"
        );
        if name == "login" {
            yaml.push_str(
                "  rate_limit:\n    name: login\n    requests: 10\n    period_secs: 60\n    burst: 10\n",
            );
        }
    }
    for (component, auth) in [
        ("logging", "\n    roles:\n    - admin"),
        ("notification", " authenticated"),
        ("profile", " authenticated"),
    ] {
        if let Some((_, url)) = upstreams.iter().find(|(name, _)| *name == component) {
            let _ = write!(
                yaml,
                "- name: {component}\n  match:\n    prefix: /{component}/\n  rewrite_prefix: /\n  upstreams:\n  - {url}\n  auth:{auth}\n"
            );
        }
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator's committed golden routes file (operator/tests/operator/golden).
    const GOLDEN_ROUTES: &str = include_str!("../../../operator/tests/operator/golden/routes.yaml");

    #[test]
    fn the_routes_file_matches_the_operators_for_the_same_upstreams() {
        // The golden Platform adds a global limit and extra routes; the harness writes
        // the routes every Platform gets, which must read exactly like the operator's.
        let golden_routes = GOLDEN_ROUTES
            .split_once("routes:\n")
            .map(|(_, routes)| routes)
            .expect("a routes list");
        let golden_routes = golden_routes
            .split_once("- name: route-")
            .map_or(golden_routes, |(platform_routes, _)| platform_routes);
        let ours = routes_yaml(
            "http://demo-identity:8080",
            &[
                ("logging", "http://demo-logging:8080".into()),
                ("notification", "http://demo-notification:8080".into()),
                ("profile", "http://demo-profile:8080".into()),
            ],
        );
        let ours = ours
            .split_once("routes:\n")
            .map(|(_, r)| r)
            .expect("routes");
        assert_eq!(ours, golden_routes);
    }

    #[test]
    fn the_client_registry_hashes_secrets_as_identity_checks_them() {
        let pepper = [7u8; 32];
        let json = client_registry_json(&pepper, &[("profile".into(), "tsc_secret".into())]);
        let registry: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &pepper);
        let expected = URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, b"tsc_secret").as_ref());
        assert_eq!(registry["clients"][0]["client_id"], "profile");
        assert_eq!(registry["clients"][0]["secret_hash"], expected.as_str());
        assert_eq!(
            registry["clients"][0]["roles"],
            serde_json::json!(["service"])
        );
    }
}
