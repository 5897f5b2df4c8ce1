//! The CloudEvents 1.0 envelope (JSON structured mode) and typed events (DESIGN.md §5).
//!
//! A service declares each event it publishes as a struct implementing [`Event`]; the
//! struct is the `data`, the trait names its `type`, NATS subject and CloudEvents
//! `subject` (the aggregate it is about, which is also the relay's ordering key).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The CloudEvents version this library writes and accepts.
pub const SPEC_VERSION: &str = "1.0";
/// `datacontenttype` of every Tessera event.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// The subject prefix of the platform's stream; the relay may map it (tests use others).
pub const SUBJECT_ROOT: &str = "tessera";

/// An event a service publishes. The struct is the event's `data`.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tessera_events::Event;
///
/// #[derive(Serialize, Deserialize)]
/// struct UserCreated { user_id: String, email: String }
///
/// impl Event for UserCreated {
///     const SERVICE: &'static str = "profile";
///     const ENTITY: &'static str = "user";
///     const VERB: &'static str = "created";
///     fn subject(&self) -> String { self.user_id.clone() }
/// }
///
/// assert_eq!(UserCreated::event_type(), "dev.tessera.profile.user.created.v1");
/// assert_eq!(UserCreated::nats_subject(), "tessera.events.profile.user.created");
/// ```
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The publishing service (`profile`): `source` is `/tessera/<service>`.
    const SERVICE: &'static str;
    /// The entity the event is about (`user`).
    const ENTITY: &'static str;
    /// What happened, past tense (`created`).
    const VERB: &'static str;
    /// Version of the `data` schema; a breaking change is a new type (`.v2`).
    const VERSION: u32 = 1;

    /// The CloudEvents `subject`: the id of the aggregate this event is about. Events of
    /// one subject are relayed in the order they were written.
    fn subject(&self) -> String;

    /// `dev.tessera.<service>.<entity>.<verb>.v<version>`.
    fn event_type() -> String {
        format!(
            "dev.tessera.{}.{}.{}.v{}",
            Self::SERVICE,
            Self::ENTITY,
            Self::VERB,
            Self::VERSION
        )
    }

    /// `tessera.events.<service>.<entity>.<verb>`: where the event is published.
    fn nats_subject() -> String {
        format!(
            "{SUBJECT_ROOT}.events.{}.{}.{}",
            Self::SERVICE,
            Self::ENTITY,
            Self::VERB
        )
    }

    /// `/tessera/<service>`.
    fn source() -> String {
        format!("/tessera/{}", Self::SERVICE)
    }
}

/// A CloudEvents 1.0 event in JSON structured mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique id (UUIDv7); also the `Nats-Msg-Id` and the inbox key.
    pub id: String,
    /// `/tessera/<service>`.
    pub source: String,
    /// `dev.tessera.<service>.<entity>.<verb>.v1`.
    #[serde(rename = "type")]
    pub type_: String,
    /// When it happened, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The aggregate the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The event's payload.
    #[serde(default)]
    pub data: Value,
}

/// Why bytes are not a usable event.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON, or required CloudEvents attributes missing or of the wrong type.
    #[error("not a CloudEvents 1.0 JSON event: {0}")]
    Malformed(String),
    /// A CloudEvents version other than 1.0.
    #[error("unsupported CloudEvents specversion {0:?}")]
    SpecVersion(String),
    /// The `data` does not match the event type's schema.
    #[error("data does not match {type_}: {reason}")]
    Data {
        /// The event type.
        type_: String,
        /// The decoding error.
        reason: String,
    },
}

impl CloudEvent {
    /// Wraps `event` with a fresh UUIDv7 id, time `now`.
    pub fn new<E: Event>(event: &E, now: OffsetDateTime) -> Self {
        Self {
            specversion: SPEC_VERSION.to_owned(),
            id: uuid::Uuid::now_v7().to_string(),
            source: E::source(),
            type_: E::event_type(),
            time: now,
            subject: Some(event.subject()),
            datacontenttype: Some(JSON_CONTENT_TYPE.to_owned()),
            // A derived `Serialize` of a plain struct cannot fail; `Null` keeps this total.
            data: serde_json::to_value(event).unwrap_or(Value::Null),
        }
    }

    /// Parses a structured-mode event, checking the required attributes.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let event: Self =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if event.specversion != SPEC_VERSION {
            return Err(EnvelopeError::SpecVersion(event.specversion));
        }
        if event.id.is_empty() || event.source.is_empty() || event.type_.is_empty() {
            return Err(EnvelopeError::Malformed(
                "id, source and type must not be empty".to_owned(),
            ));
        }
        Ok(event)
    }

    /// The `data` as `E`.
    pub fn decode<E: Event>(&self) -> Result<E, EnvelopeError> {
        serde_json::from_value(self.data.clone()).map_err(|e| EnvelopeError::Data {
            type_: self.type_.clone(),
            reason: e.to_string(),
        })
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        // Serialising strings, a timestamp and a `Value` cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `time` as RFC 3339 text.
    pub fn time_rfc3339(&self) -> String {
        self.time.format(&Rfc3339).unwrap_or_default()
    }
}

/// One outbox row: what a service writes in its transaction and the relay publishes.
///
/// The columns match the `outbox` table every service declares (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The `CloudEvents` id (UUIDv7), also the `Nats-Msg-Id`.
    pub id: String,
    /// NATS subject under `tessera.` (`tessera.events.profile.user.created`).
    pub subject: String,
    /// The event as `CloudEvents` JSON.
    pub event: String,
    /// Unix seconds when written; the relay sends oldest first (ties by id).
    pub created_at: i64,
}

impl OutboxMessage {
    /// The row for a typed event happening at `now`.
    pub fn new<E: Event>(event: &E, now: OffsetDateTime) -> Self {
        Self::from_cloud_event(&CloudEvent::new(event, now), E::nats_subject())
    }

    /// The row for an already built envelope published on `subject` (for events that are
    /// not declared as [`Event`] structs, such as identity's audit records).
    pub fn from_cloud_event(event: &CloudEvent, subject: String) -> Self {
        Self {
            id: event.id.clone(),
            subject,
            event: event.to_json(),
            created_at: event.time.unix_timestamp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Created {
        user_id: String,
    }

    impl Event for Created {
        const SERVICE: &'static str = "profile";
        const ENTITY: &'static str = "user";
        const VERB: &'static str = "created";
        fn subject(&self) -> String {
            self.user_id.clone()
        }
    }

    #[test]
    fn a_typed_event_becomes_a_cloud_event_and_back() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let created = Created {
            user_id: "u1".into(),
        };
        let row = OutboxMessage::new(&created, now);
        assert_eq!(row.subject, "tessera.events.profile.user.created");
        assert_eq!(row.created_at, 1_700_000_000);
        let json: Value = serde_json::from_str(&row.event).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "dev.tessera.profile.user.created.v1");
        assert_eq!(json["source"], "/tessera/profile");
        assert_eq!(json["subject"], "u1");
        assert_eq!(json["time"], "2023-11-14T22:13:20Z");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["id"], row.id.as_str());
        assert_eq!(uuid::Uuid::parse_str(&row.id).unwrap().get_version_num(), 7);
        let parsed = CloudEvent::parse(row.event.as_bytes()).unwrap();
        assert_eq!(parsed.decode::<Created>().unwrap(), created);
    }

    #[test]
    fn malformed_events_are_refused_with_a_reason() {
        assert!(matches!(
            CloudEvent::parse(b"not json"),
            Err(EnvelopeError::Malformed(_))
        ));
        let v2 = br#"{"specversion":"0.3","id":"1","source":"/x","type":"t","time":"2024-01-01T00:00:00Z"}"#;
        assert!(matches!(
            CloudEvent::parse(v2),
            Err(EnvelopeError::SpecVersion(_))
        ));
        let wrong_data = br#"{"specversion":"1.0","id":"1","source":"/x","type":"t","time":"2024-01-01T00:00:00Z","data":{"user_id":5}}"#;
        let event = CloudEvent::parse(wrong_data).unwrap();
        assert!(matches!(
            event.decode::<Created>(),
            Err(EnvelopeError::Data { .. })
        ));
    }
}
