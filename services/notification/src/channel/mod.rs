//! Delivery channels behind one trait: email (SMTP or `.eml` files), SMS and push (an
//! HTTP provider's JSON webhook, or JSON files).

pub mod file;
pub mod smtp;
pub mod webhook;

use std::fmt;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A delivery channel.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    Sms,
    Push,
}

impl ChannelKind {
    /// Every channel.
    pub const ALL: [Self; 3] = [Self::Email, Self::Sms, Self::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Push => "push",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rendered message on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The job's id: the email's `Message-ID` and the provider's idempotency key, so a
    /// receiver can drop a duplicate sent after a crash.
    pub job_id: String,
    /// Email address, E.164 phone number or user id (push).
    pub to: String,
    /// Email subject or push title.
    pub subject: Option<String>,
    pub body: String,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: SMTP 4xx, connection trouble, provider 429/5xx.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help: SMTP 5xx, invalid address, provider 4xx.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Sends messages on one channel.
pub trait Channel: Send + Sync + fmt::Debug {
    /// Hands `message` to the channel; `Ok` once the server or provider accepted it.
    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, Result<(), SendError>>;
}
