//! Where verification keys come from: a JWKS URL over HTTP, or an in-memory key set that
//! its owner replaces (identity verifying its own tokens).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header;
use jsonwebtoken::jwk::JwkSet;

use crate::error::KeySourceError;

/// Largest JWKS document accepted. A key set holds a handful of keys (a 4096-bit RSA JWK
/// is under 1 KiB), so 256 KiB leaves ample room while bounding memory per fetch.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Connecting to identity is local-network fast; a slow connect means it is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Whole-request bound, so a stalled server cannot hold the refetch lock for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A boxed future, as returned by [`KeySource::fetch`] (object safety).
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<JwkSet, KeySourceError>> + Send + 'a>>;

/// A source of the public keys that sign access tokens.
pub trait KeySource: Send + Sync + 'static {
    /// Fetches the current key set.
    fn fetch(&self) -> FetchFuture<'_>;
}

/// Fetches a JWKS document over HTTP(S), with timeouts and a size limit.
///
/// Redirects are not followed: the URL is configuration, and a JWKS endpoint that
/// redirects is misconfigured or compromised.
#[derive(Debug, Clone)]
pub struct HttpJwks {
    url: String,
    client: reqwest::Client,
    max_bytes: usize,
}

impl HttpJwks {
    /// A source fetching `url` (e.g. `http://identity:8080/.well-known/jwks.json`).
    pub fn new(url: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // Only fails when the TLS backend cannot initialise: a broken build, not input.
            .expect("the HTTP client for JWKS fetches must build");
        Self::with_client(url, client)
    }

    /// A source using a caller-built client (custom CA, proxy, timeouts).
    pub fn with_client(url: impl Into<String>, client: reqwest::Client) -> Self {
        Self {
            url: url.into(),
            client,
            max_bytes: MAX_JWKS_BYTES,
        }
    }

    /// Changes the largest accepted document size.
    #[must_use]
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The URL fetched.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn fetch_now(&self) -> Result<JwkSet, KeySourceError> {
        let mut response = self
            .client
            .get(&self.url)
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(KeySourceError::Request)?;
        if !response.status().is_success() {
            return Err(KeySourceError::Status(response.status()));
        }
        let limit = self.max_bytes;
        let too_large = KeySourceError::TooLarge { limit };
        // Refuse early when the length is announced; otherwise count while reading.
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(KeySourceError::Request)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(KeySourceError::Invalid)
    }
}

impl KeySource for HttpJwks {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.fetch_now())
    }
}

/// An in-memory key set its owner replaces with [`StaticJwks::set`].
///
/// Identity verifies its own tokens with this, fed from its keyset. After `set`, call
/// [`Verifier::refresh`](crate::Verifier::refresh) for the change to apply at once;
/// otherwise it applies at the next refresh or unknown `kid`.
#[derive(Debug)]
pub struct StaticJwks {
    keys: ArcSwap<JwkSet>,
}

impl StaticJwks {
    /// A source serving `keys`.
    pub fn new(keys: JwkSet) -> Self {
        Self {
            keys: ArcSwap::from_pointee(keys),
        }
    }

    /// Replaces the key set.
    pub fn set(&self, keys: JwkSet) {
        self.keys.store(Arc::new(keys));
    }
}

impl KeySource for StaticJwks {
    fn fetch(&self) -> FetchFuture<'_> {
        let keys = JwkSet::clone(&self.keys.load());
        Box::pin(std::future::ready(Ok(keys)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_static_source_serves_the_key_set_it_was_last_given() {
        let source = StaticJwks::new(JwkSet { keys: vec![] });
        let replacement: JwkSet = serde_json::from_str(
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        )
        .unwrap();
        source.set(replacement.clone());
        assert_eq!(source.fetch().await.unwrap(), replacement);
    }
}
