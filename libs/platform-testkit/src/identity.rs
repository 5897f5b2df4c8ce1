//! The real identity service for a test: started with registered service clients, and
//! the users and tokens tests get from it over HTTP.

use std::path::Path;

use base64::Engine;
use clap::Parser;
use serde_json::{Value, json};
use service_kit::CancellationToken;
use tessera_identity::state::AppState;

use crate::serve_on_loopback;

/// The client-secret pepper the harness's identity hashes registered secrets with.
const PEPPER: [u8; 32] = [5; 32];

/// The password [`new_user`] signs every user up with.
pub const PASSWORD: &str = "a perfectly fine passphrase";

/// A client of identity's client registry (`client_credentials` grant).
#[derive(Debug, Clone, Copy)]
pub struct ServiceClient<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub roles: &'a [&'a str],
}

/// A client registry file (identity's `--client-registry`) holding `clients`, their
/// secrets hashed with `pepper`.
pub fn client_registry(pepper: &[u8; 32], clients: &[ServiceClient<'_>]) -> String {
    let hasher = tessera_identity::secrets::SecretHasher::new(pepper);
    let clients: Vec<Value> = clients
        .iter()
        .map(|client| {
            let hash = hasher.hash(client.secret);
            json!({
                "client_id": client.id,
                "secret_hash": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash),
                "roles": client.roles,
            })
        })
        .collect();
    json!({ "clients": clients }).to_string()
}

/// Starts identity (SQLite in `dir`) issuing tokens as `issuer`, with `clients`
/// registered, and waits until it is ready; returns its public base URL and its state
/// (to sign tokens with).
pub async fn start_identity(
    dir: &Path,
    issuer: &str,
    clients: &[ServiceClient<'_>],
    stop: &CancellationToken,
) -> (String, AppState) {
    let registry_file = dir.join("clients.json");
    std::fs::write(&registry_file, client_registry(&PEPPER, clients)).expect("write registry");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let config = tessera_identity::config::Cli::try_parse_from([
        "tessera-identity",
        "--issuer",
        issuer,
        "--database-url",
        &format!("sqlite:{}", dir.join("identity.db").display()),
        // Cheap password hashing (production uses 19 MiB, 2 passes): tests sign users up
        // by the dozen on a shared machine.
        "--argon2-memory-kib",
        "256",
        "--argon2-iterations",
        "1",
        "--keyset-encryption-key",
        &b64(&[42; 32]),
        "--client-registry",
        &registry_file.display().to_string(),
        "--client-secret-pepper",
        &b64(&PEPPER),
    ])
    .expect("valid identity config")
    .config;
    let identity = tessera_identity::build(&config, tessera_identity::Runtime::default(), stop)
        .expect("identity builds");
    let state = identity.state.clone();
    let endpoints =
        serve_on_loopback(|listeners| identity.service.serve(listeners, stop.clone())).await;
    (endpoints.base, state)
}

/// A token identity signs for a logging reader (role `admin`).
pub fn admin_token(identity: &AppState) -> String {
    identity
        .tokens
        .issue("log-reader", &["admin".to_owned()], None)
        .expect("a signing key is loaded")
        .access_token
}

/// Signs `email` up at identity (`identity` is its base URL) with [`PASSWORD`] and logs
/// in; returns the new user's id and access token.
pub async fn new_user(http: &reqwest::Client, identity: &str, email: &str) -> (String, String) {
    let credentials = json!({ "email": email, "password": PASSWORD });
    let signup = http
        .post(format!("{identity}/v1/signup"))
        .json(&credentials)
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 201, "signup of {email}");
    let user: Value = signup.json().await.expect("json");
    let login: Value = http
        .post(format!("{identity}/v1/login"))
        .json(&credentials)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    (
        user["id"].as_str().expect("id").to_owned(),
        login["access_token"].as_str().expect("token").to_owned(),
    )
}

/// A client-credentials access token identity (at `identity`) issues to `client`.
pub async fn service_token(
    http: &reqwest::Client,
    identity: &str,
    client: &ServiceClient<'_>,
) -> String {
    let response: Value = http
        .post(format!("{identity}/oauth2/token"))
        .basic_auth(client.id, Some(client.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("json");
    response["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}
