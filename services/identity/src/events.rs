//! Events identity publishes, as CloudEvents 1.0 (JSON structured mode) ready for the
//! outbox: domain events on `tessera.events.identity.*`, audit records on
//! `tessera.audit.identity.*` (DESIGN.md §5–6). The relay to NATS comes with the event
//! library (issue #5); until then rows wait in the outbox table.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `source` of every identity event.
const SOURCE: &str = "/tessera/identity";

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

/// Security-relevant actions recorded in the audit chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A user signed up.
    Signup,
    /// A login succeeded.
    LoginSucceeded,
    /// A login failed (wrong password, unknown account, locked, disabled).
    LoginFailed,
    /// An access token was issued to a service client or for a refresh token.
    TokenIssued,
    /// A spent refresh token was presented again; its family was revoked.
    RefreshReuseDetected,
    /// A signing key changed state.
    KeyStateChanged,
    /// A service client was created.
    ClientCreated,
    /// A service client was disabled.
    ClientDisabled,
    /// A user was disabled.
    UserDisabled,
}

impl AuditAction {
    fn name(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::TokenIssued => "token_issued",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::KeyStateChanged => "key_state_changed",
            Self::ClientCreated => "client_created",
            Self::ClientDisabled => "client_disabled",
            Self::UserDisabled => "user_disabled",
        }
    }
}

impl OutboxEvent {
    fn cloud_event(
        type_: &str,
        subject_of_event: &str,
        data: &Value,
        now: OffsetDateTime,
    ) -> (String, String) {
        let id = uuid::Uuid::now_v7().to_string();
        let event = json!({
            "specversion": "1.0",
            "id": id,
            "source": SOURCE,
            "type": type_,
            "time": now.format(&Rfc3339).unwrap_or_default(),
            "subject": subject_of_event,
            "datacontenttype": "application/json",
            "data": data,
        });
        (id, event.to_string())
    }

    /// `dev.tessera.identity.user.registered.v1` for a new user.
    pub fn user_registered(user_id: &str, email: &str, now: OffsetDateTime) -> Self {
        let (id, event) = Self::cloud_event(
            "dev.tessera.identity.user.registered.v1",
            user_id,
            &json!({ "user_id": user_id, "email": email }),
            now,
        );
        Self {
            id,
            subject: "tessera.events.identity.user.registered".into(),
            event,
            created_at: now.unix_timestamp(),
        }
    }

    /// An audit record. `subject` is who or what it is about (user id, client id, kid);
    /// `details` never holds secrets or tokens.
    pub fn audit(action: AuditAction, subject: &str, details: &Value, now: OffsetDateTime) -> Self {
        let name = action.name();
        let (id, event) = Self::cloud_event(
            &format!("dev.tessera.identity.audit.{name}.v1"),
            subject,
            &json!({ "action": action, "subject": subject, "details": details }),
            now,
        );
        Self {
            id,
            subject: format!("tessera.audit.identity.{name}"),
            event,
            created_at: now.unix_timestamp(),
        }
    }
}
