//! The events profile publishes (DESIGN.md §5), written to the transactional outbox with
//! `tessera_events::outbox::write` in the transaction that makes the change.

use serde::{Deserialize, Serialize};
use tessera_events::Event;

use crate::api::profiles::Preferences;
use crate::db::profiles::ProfileRow;

/// `dev.tessera.profile.user.created.v1` on `tessera.events.profile.user.created`: a user
/// created their profile. Carries the whole profile as created, so a consumer can greet
/// them without calling back: notification takes it as a lookup of the profile made at
/// the event's `time` (reused, like one, for its preferences TTL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub locale: String,
    pub phone: Option<String>,
    pub preferences: Preferences,
}

impl Event for UserCreated {
    const SERVICE: &'static str = "profile";
    const ENTITY: &'static str = "user";
    const VERB: &'static str = "created";

    fn subject(&self) -> String {
        self.user_id.clone()
    }
}

impl From<&ProfileRow> for UserCreated {
    fn from(row: &ProfileRow) -> Self {
        Self {
            user_id: row.user_id.clone(),
            email: row.email.clone(),
            display_name: row.display_name.clone(),
            locale: row.locale.clone(),
            phone: row.phone.clone(),
            preferences: Preferences::from(row),
        }
    }
}
