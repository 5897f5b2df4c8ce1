//! Recipients from the profile service: address, locale and per-channel preferences,
//! fetched with notification's own service token and cached for a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use tessera_auth::ClientCredentials;
use tokio::time::Instant;

use crate::channel::ChannelKind;

/// Entries kept at most; beyond this the cache is cleared (simple and bounded).
const MAX_CACHED: usize = 100_000;
/// Profile is on the local network: a slow answer means trouble.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-channel consent, as profile stores it.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Preferences {
    pub email: bool,
    pub sms: bool,
    pub push: bool,
}

impl Preferences {
    /// Whether the user accepts messages on `channel`.
    pub fn allows(self, channel: ChannelKind) -> bool {
        match channel {
            ChannelKind::Email => self.email,
            ChannelKind::Sms => self.sms,
            ChannelKind::Push => self.push,
        }
    }
}

/// What notification needs of a profile.
#[derive(Debug, Clone, Deserialize)]
pub struct Recipient {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub locale: String,
    pub phone: Option<String>,
    pub preferences: Preferences,
}

/// Why a recipient could not be looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The user has no profile.
    #[error("the user has no profile")]
    NotFound,
    /// Profile or identity cannot answer now.
    #[error("profile lookup failed: {0}")]
    Unavailable(String),
}

/// Looks recipients up at the profile service.
pub struct Recipients {
    http: reqwest::Client,
    base: String,
    tokens: ClientCredentials,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Arc<Recipient>)>>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipients")
            .field("base", &self.base)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Recipients {
    pub fn new(profile_url: &str, tokens: ClientCredentials, ttl: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("the HTTP client for profile must build");
        Self {
            http,
            base: profile_url.trim_end_matches('/').to_owned(),
            tokens,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The recipient `user_id`, from the cache while fresh.
    pub async fn get(&self, user_id: &str) -> Result<Arc<Recipient>, LookupError> {
        if let Some((fetched, recipient)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user_id)
            && fetched.elapsed() < self.ttl
        {
            return Ok(recipient.clone());
        }
        let recipient = Arc::new(self.fetch(user_id, true).await?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(user_id.to_owned(), (Instant::now(), recipient.clone()));
        Ok(recipient)
    }

    async fn fetch(&self, user_id: &str, retry_on_401: bool) -> Result<Recipient, LookupError> {
        let unavailable = |e: &dyn std::fmt::Display| LookupError::Unavailable(e.to_string());
        let token = self.tokens.token().await.map_err(|e| unavailable(&e))?;
        let mut url = reqwest::Url::parse(&format!("{}/v1/profiles/", self.base))
            .map_err(|e| unavailable(&e))?;
        url.path_segments_mut()
            .map_err(|()| unavailable(&"profile URL cannot be a base"))?
            .pop_if_empty()
            .push(user_id);
        let response = self
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        match response.status() {
            StatusCode::OK => response.json().await.map_err(|e| unavailable(&e)),
            StatusCode::NOT_FOUND => Err(LookupError::NotFound),
            // A token identity rotated away or revoked: fetch a new one once.
            StatusCode::UNAUTHORIZED if retry_on_401 => {
                self.tokens.invalidate();
                Box::pin(self.fetch(user_id, false)).await
            }
            status => Err(LookupError::Unavailable(format!(
                "profile answered {status}"
            ))),
        }
    }
}
