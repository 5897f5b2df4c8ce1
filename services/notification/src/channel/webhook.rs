//! SMS and push through an HTTP provider: one JSON POST per message with the configured
//! authentication header, and the job id as `Idempotency-Key` so providers that honour it
//! drop a duplicate sent after a crash.

use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{Channel, ChannelKind, Outgoing, SendError};

/// A provider's webhook.
pub struct WebhookChannel {
    http: reqwest::Client,
    url: String,
    kind: ChannelKind,
    auth: Option<(HeaderName, SecretString)>,
}

impl std::fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("url", &self.url)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl WebhookChannel {
    pub fn new(
        url: String,
        kind: ChannelKind,
        auth: Option<(HeaderName, SecretString)>,
        timeout: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client for providers must build");
        Self {
            http,
            url,
            kind,
            auth,
        }
    }
}

impl Channel for WebhookChannel {
    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let mut request = self
                .http
                .post(&self.url)
                .header("idempotency-key", &message.job_id)
                .json(&json!({
                    "id": message.job_id,
                    "channel": self.kind,
                    "to": message.to,
                    "title": message.subject,
                    "body": message.body,
                }));
            if let Some((name, value)) = &self.auth {
                let mut value = HeaderValue::from_str(value.expose_secret())
                    .map_err(|_| SendError::Permanent("invalid auth header value".into()))?;
                value.set_sensitive(true);
                request = request.header(name, value);
            }
            let response = request
                .send()
                .await
                .map_err(|e| SendError::Transient(format!("provider unreachable: {e}")))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else if status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error()
            {
                Err(SendError::Transient(format!("provider answered {status}")))
            } else {
                Err(SendError::Permanent(format!("provider answered {status}")))
            }
        })
    }
}
