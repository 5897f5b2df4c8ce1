//! Recipients from the profile service: address, locale and per-channel preferences,
//! fetched with notification's own service token and cached for a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use tessera_auth::ClientCredentials;
use tokio::time::Instant;

use crate::channel::ChannelKind;

/// Entries kept at most; beyond this the cache is cleared (simple and bounded).
const MAX_CACHED: usize = 100_000;
/// Profile is on the local network: a slow answer means trouble.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-channel consent, as profile stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
        self.keep(user_id, Instant::now(), recipient.clone());
        Ok(recipient)
    }

    /// Keeps `recipient` as if fetched `age` ago (a profile an event carried, `age` after
    /// the event's time): reused like a lookup of that moment until the TTL runs out, so
    /// a welcome mail needs no request to profile. Nothing is kept when `age` is past the
    /// TTL, nor over an entry fetched later.
    pub fn remember(&self, recipient: Recipient, age: Duration) {
        if age >= self.ttl {
            return;
        }
        let now = Instant::now();
        let fetched = now.checked_sub(age).unwrap_or(now);
        let user_id = recipient.user_id.clone();
        self.keep(&user_id, fetched, Arc::new(recipient));
    }

    /// Caches `recipient` as `user_id`'s, fetched at `fetched`, unless a later fetch is
    /// cached.
    fn keep(&self, user_id: &str, fetched: Instant, recipient: Arc<Recipient>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache
            .get(user_id)
            .is_some_and(|(cached, _)| *cached > fetched)
        {
            return;
        }
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(user_id.to_owned(), (fetched, recipient));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Recipients whose profile and identity cannot be reached: every lookup that is
    /// not answered from the cache fails.
    fn unreachable(ttl: Duration) -> Recipients {
        let tokens = ClientCredentials::new(
            "http://127.0.0.1:9/oauth2/token",
            "notification",
            "secret".to_owned().into(),
        );
        Recipients::new("http://127.0.0.1:9", tokens, ttl)
    }

    fn ada() -> Recipient {
        Recipient {
            user_id: "ada".into(),
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            locale: "en".into(),
            phone: None,
            preferences: Preferences {
                email: true,
                sms: false,
                push: true,
            },
        }
    }

    #[tokio::test]
    async fn a_remembered_profile_is_used_while_fresh() {
        let recipients = unreachable(Duration::from_secs(60));
        recipients.remember(ada(), Duration::from_secs(59));
        let found = recipients.get("ada").await.expect("from the cache");
        assert_eq!(found.email, "ada@example.com");
        assert!(!found.preferences.allows(ChannelKind::Sms));
    }

    #[tokio::test]
    async fn a_profile_older_than_the_ttl_is_looked_up() {
        let recipients = unreachable(Duration::from_secs(60));
        recipients.remember(ada(), Duration::from_secs(60));
        let error = recipients.get("ada").await.expect_err("not cached");
        assert!(matches!(error, LookupError::Unavailable(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_remembered_profile_expires_with_its_age() {
        let recipients = unreachable(Duration::from_secs(1));
        recipients.remember(ada(), Duration::from_millis(800));
        assert!(recipients.get("ada").await.is_ok(), "800 ms old");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(recipients.get("ada").await.is_err(), "1.1 s old");
    }

    #[tokio::test]
    async fn an_older_profile_does_not_replace_a_newer_one() {
        let recipients = unreachable(Duration::from_secs(60));
        recipients.remember(ada(), Duration::from_secs(1));
        let older = Recipient {
            email: "old@example.com".into(),
            ..ada()
        };
        recipients.remember(older, Duration::from_secs(30));
        let found = recipients.get("ada").await.expect("cached");
        assert_eq!(found.email, "ada@example.com");
    }
}
