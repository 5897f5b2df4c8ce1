//! The requests each HTTP section sends, as real clients send them, and the set-up
//! they need (a sanity check of one answer, users signed up before logins).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};

use crate::identity::{self, CLIENT_ID, CLIENT_SECRET, PASSWORD};
use crate::load::{self, MakeRequest};

/// `POST /oauth2/token` with `grant_type=client_credentials` and HTTP Basic credentials.
pub(crate) fn client_credentials(addr: SocketAddr) -> MakeRequest {
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let host = addr.to_string();
    Arc::new(move |_, _| {
        Request::post("/oauth2/token")
            .header(HOST, &host)
            .header(AUTHORIZATION, &basic)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"grant_type=client_credentials",
            )))
            .expect("static request parts are valid")
    })
}

/// A bodiless GET of `path`.
pub(crate) fn get(addr: SocketAddr, path: &'static str) -> MakeRequest {
    Arc::new(move |_, _| identity::get(addr, path))
}

/// The email of benchmark user `n`.
fn email(n: usize) -> String {
    format!("user{n}@bench.example.com")
}

fn json_post(addr: SocketAddr, path: &str) -> hyper::http::request::Builder {
    Request::post(path)
        .header(HOST, addr.to_string())
        .header(CONTENT_TYPE, "application/json")
}

/// `POST /v1/login` of user `worker % users` with the right password. Every attempt
/// comes from its own address (`X-Forwarded-For`, as the gateway appends it), so the
/// per-address throttle, which counts successes too, never trips.
pub(crate) fn login(addr: SocketAddr, users: usize) -> MakeRequest {
    let next_address = Arc::new(AtomicU32::new(0));
    Arc::new(move |worker, _| {
        let n = next_address.fetch_add(1, Ordering::Relaxed);
        let address = Ipv4Addr::from(0x0A00_0000 | (n & 0x00FF_FFFF));
        let body =
            serde_json::json!({ "email": email(worker % users), "password": PASSWORD }).to_string();
        json_post(addr, "/v1/login")
            .header("x-forwarded-for", address.to_string())
            .body(Full::new(Bytes::from(body)))
            .expect("request parts are valid")
    })
}

/// Signs up `users` users, all at once (identity bounds the Argon2 work itself).
pub(crate) async fn sign_up(addr: SocketAddr, users: usize) -> anyhow::Result<()> {
    let mut signups = tokio::task::JoinSet::new();
    for n in 0..users {
        let body = serde_json::json!({ "email": email(n), "password": PASSWORD }).to_string();
        let request = json_post(addr, "/v1/signup")
            .body(Full::new(Bytes::from(body)))
            .expect("request parts are valid");
        signups.spawn(load::once(addr, request));
    }
    while let Some(done) = signups.join_next().await {
        let (status, body) = done.context("signup task")??;
        if status != StatusCode::CREATED {
            bail!(
                "signup answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    Ok(())
}

/// Sends one request of `make` and checks its answer, so a broken set-up fails loudly
/// instead of being measured as a fast stream of errors.
pub(crate) async fn check(
    addr: SocketAddr,
    make: &MakeRequest,
    expected: StatusCode,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let (status, body) = load::once(addr, make(0, 0)).await?;
    ensure!(
        status == expected,
        "{what}: expected {expected}, got {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body).unwrap_or_default())
}

/// Checks that a token answer holds an EdDSA `at+jwt` access token.
pub(crate) fn check_token(answer: &serde_json::Value) -> anyhow::Result<()> {
    let token = answer["access_token"]
        .as_str()
        .context("no access_token in the token answer")?;
    let header = token.split('.').next().unwrap_or_default();
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .context("the access token has no JSON header")?;
    ensure!(
        header["typ"] == "at+jwt" && header["alg"] == "EdDSA",
        "unexpected access-token header {header}"
    );
    Ok(())
}
