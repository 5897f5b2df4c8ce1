//! The events profile publishes, as CloudEvents 1.0 (JSON structured mode) rows for the
//! transactional outbox (DESIGN.md §5).

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::db::profiles::ProfileRow;

/// `source` of every profile event.
pub const SOURCE: &str = "/tessera/profile";
/// `type` of the event announcing a new profile.
pub const USER_CREATED_TYPE: &str = "dev.tessera.profile.user.created.v1";
/// NATS subject of that event.
pub const USER_CREATED_SUBJECT: &str = "tessera.events.profile.user.created";

/// A row for the outbox table.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// `CloudEvents` `id` (UUIDv7), also the NATS `Nats-Msg-Id`.
    pub id: String,
    /// NATS subject.
    pub subject: String,
    /// The event, serialised as `CloudEvents` JSON.
    pub event: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl OutboxEvent {
    /// `dev.tessera.profile.user.created.v1`: what notification needs to greet the user.
    pub fn user_created(profile: &ProfileRow, now: OffsetDateTime) -> Self {
        let id = uuid::Uuid::now_v7().to_string();
        let data: Value = json!({
            "user_id": profile.user_id,
            "email": profile.email,
            "display_name": profile.display_name,
            "locale": profile.locale,
            "phone": profile.phone,
        });
        let event = json!({
            "specversion": "1.0",
            "id": id,
            "source": SOURCE,
            "type": USER_CREATED_TYPE,
            "time": now.format(&Rfc3339).unwrap_or_default(),
            "subject": profile.user_id,
            "datacontenttype": "application/json",
            "data": data,
        });
        Self {
            id,
            subject: USER_CREATED_SUBJECT.to_owned(),
            event: event.to_string(),
            created_at: now.unix_timestamp(),
        }
    }
}
