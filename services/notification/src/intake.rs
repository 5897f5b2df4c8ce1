//! Events notification acts on: `user.created` becomes a welcome notification with one
//! job per usable channel, stored with the inbox row in one transaction before the event
//! is acknowledged.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use service_kit::{Clock, Pool};
use tessera_events::{ConsumerConfig, Event, HandlerError, HandlerResult, Received, Router};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::channel::ChannelKind;
use crate::db::notifications::{self, Guard, NewJob, NewNotification};
use crate::recipients::{Preferences, Recipient, Recipients};
use crate::templates::{Templates, WELCOME};

/// The durable consumer's name (and the inbox's `consumer`).
pub const CONSUMER: &str = "notification";

/// `dev.tessera.profile.user.created.v1`, as profile publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub locale: String,
    #[serde(default)]
    pub phone: Option<String>,
    /// The preferences as created (events from before profile sent them have none).
    #[serde(default)]
    pub preferences: Option<Preferences>,
}

impl Event for UserCreated {
    const SERVICE: &'static str = "profile";
    const ENTITY: &'static str = "user";
    const VERB: &'static str = "created";

    fn subject(&self) -> String {
        self.user_id.clone()
    }
}

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct Intake {
    pub pool: Pool,
    pub templates: Arc<Templates>,
    pub channels: Arc<HashSet<ChannelKind>>,
    pub clock: Arc<dyn Clock>,
    pub wake: Arc<Notify>,
    /// The delivery's profile cache, given the profile the event carries.
    pub recipients: Arc<Recipients>,
}

impl Intake {
    /// The consumer: its subjects and handlers.
    pub fn consumer(&self) -> (ConsumerConfig, Router) {
        let intake = self.clone();
        let router = Router::new().on::<UserCreated, _, _>(move |received| {
            let intake = intake.clone();
            async move { intake.welcome(received).await }
        });
        let subjects = [UserCreated::nats_subject()];
        let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
        (ConsumerConfig::new(CONSUMER, &subjects), router)
    }

    async fn welcome(&self, received: Received<UserCreated>) -> HandlerResult {
        let user = received.event;
        if user.user_id.is_empty() || user.email.is_empty() {
            return Err(HandlerError::reject(
                "user.created without user_id or email",
            ));
        }
        let usable = |kind| self.channels.contains(&kind) && self.templates.supports(WELCOME, kind);
        let mut jobs = Vec::new();
        if usable(ChannelKind::Email) {
            jobs.push(NewJob {
                id: uuid::Uuid::now_v7().to_string(),
                channel: ChannelKind::Email,
                address: Some(user.email.clone()),
            });
        }
        if let Some(phone) = user.phone.clone().filter(|_| usable(ChannelKind::Sms)) {
            jobs.push(NewJob {
                id: uuid::Uuid::now_v7().to_string(),
                channel: ChannelKind::Sms,
                address: Some(phone),
            });
        }
        let now = self.clock.now();
        self.remember(&user, received.envelope.time, now);
        let notification = NewNotification {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.user_id.clone(),
            template: WELCOME.to_owned(),
            locale: Some(user.locale.clone()),
            data: json!({ "display_name": user.display_name }).to_string(),
            critical: false,
            origin: "event",
            requested_by: received.envelope.source.clone(),
            created_at: now.unix_timestamp(),
        };
        let guard = Guard::Inbox {
            consumer: CONSUMER,
            event_id: &received.envelope.id,
        };
        let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        notifications::create(&self.pool, &notification, &jobs, guard, now_ms)
            .await
            .map_err(HandlerError::retry)?;
        crate::delivery::wake_for(&self.wake, jobs.len());
        Ok(())
    }

    /// Gives the delivery the profile `user` as it was at `created` (the event's time),
    /// so its welcome mail needs no lookup while that is fresh.
    fn remember(&self, user: &UserCreated, created: OffsetDateTime, now: OffsetDateTime) {
        let Some(preferences) = user.preferences else {
            return;
        };
        // An event stamped ahead of this clock counts as just made.
        let age = Duration::try_from(now - created).unwrap_or(Duration::ZERO);
        let recipient = Recipient {
            user_id: user.user_id.clone(),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            locale: user.locale.clone(),
            phone: user.phone.clone(),
            preferences,
        };
        self.recipients.remember(recipient, age);
    }
}
