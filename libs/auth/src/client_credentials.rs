//! Service-to-service tokens: the OAuth2 client-credentials grant (RFC 6749 §4.4), with the
//! token cached until most of its lifetime has passed and one refresh shared by all callers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::header;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::TokenSourceError;

/// Share of `expires_in` after which the token is renewed: the remaining 20 % absorb
/// clock skew and the time a request spends in flight before the callee checks `exp`.
const RENEW_AT_FRACTION: f64 = 0.8;

/// Lifetime assumed when the server omits `expires_in` (RFC 6749 makes it optional):
/// short, so a token of unknown lifetime is not reused for long.
const DEFAULT_EXPIRES_IN_SECS: u64 = 60;

/// Largest token response read; a token response is a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Token requests go to identity on the local network: a slow answer means trouble.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

struct CachedToken {
    token: SecretString,
    renew_at: Instant,
}

/// Obtains and caches access tokens for a service with the client-credentials grant.
pub struct ClientCredentials {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    cached: ArcSwapOption<CachedToken>,
    /// Held while fetching, so concurrent callers share one request.
    refresh: tokio::sync::Mutex<()>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

impl ClientCredentials {
    /// A token source for `client_id` at `token_url` (identity's `/oauth2/token`).
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // Never replay client credentials to wherever a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // Only fails when the TLS backend cannot initialise: a broken build, not input.
            .expect("the HTTP client for token requests must build");
        Self {
            http,
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            cached: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// A current access token: the cached one until 80 % of its lifetime has passed, else
    /// a new one. Concurrent callers share a single request.
    pub async fn token(&self) -> Result<String, TokenSourceError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _single_flight = self.refresh.lock().await;
        // Whoever held the lock before us may have renewed it already.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let fetched = self.request().await?;
        let token = fetched.token.expose_secret().to_owned();
        self.cached.store(Some(Arc::new(fetched)));
        Ok(token)
    }

    /// Drops the cached token, e.g. after a callee refused it; the next call fetches anew.
    pub fn invalidate(&self) {
        self.cached.store(None);
    }

    fn fresh(&self) -> Option<String> {
        let cached = self.cached.load();
        let cached = cached.as_ref()?;
        (Instant::now() < cached.renew_at).then(|| cached.token.expose_secret().to_owned())
    }

    async fn request(&self) -> Result<CachedToken, TokenSourceError> {
        let requested_at = Instant::now();
        // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
        let mut response = self
            .http
            .post(&self.token_url)
            .basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(self.client_secret.expose_secret())),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(TokenSourceError::Request)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(TokenSourceError::Request)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TokenSourceError::InvalidResponse("body too large"));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let error = serde_json::from_slice::<ErrorResponse>(&body)
                .ok()
                .map(|e| e.error);
            return Err(TokenSourceError::Rejected { status, error });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| TokenSourceError::InvalidResponse("not a token response"))?;
        if !parsed.token_type.eq_ignore_ascii_case("bearer") {
            return Err(TokenSourceError::InvalidResponse(
                "token_type is not Bearer",
            ));
        }
        if parsed.access_token.is_empty() {
            return Err(TokenSourceError::InvalidResponse("empty access_token"));
        }
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_SECS));
        Ok(CachedToken {
            token: SecretString::from(parsed.access_token),
            // Counted from the request, not the answer: the server's clock started then.
            renew_at: requested_at + lifetime.mul_f64(RENEW_AT_FRACTION),
        })
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => {
                use fmt::Write as _;
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}

/// The token a service sends with its shipped logs (service-kit's log shipping). A token
/// that cannot be had is logged and the batch goes without one: logging refuses it and
/// the shipper retries with backoff, so logs are never blocked on identity.
impl service_kit::log_shipping::TokenSource for ClientCredentials {
    fn token(&self) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move {
            match Self::token(self).await {
                Ok(token) => Some(token),
                Err(error) => {
                    tracing::warn!(%error, "no service token for log shipping");
                    None
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_form_encoded_before_basic_encoding() {
        assert_eq!(form_encode("svc-profile_1.a*"), "svc-profile_1.a*");
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }

    #[test]
    fn debug_output_does_not_show_the_secret() {
        let source = ClientCredentials::new(
            "http://id/oauth2/token",
            "svc",
            SecretString::from("hunter2-secret"),
        );
        let debug = format!("{source:?}");
        assert!(debug.contains("svc"));
        assert!(!debug.contains("hunter2"));
    }
}
