//! `/v1/profiles`: a user creates, reads and updates their own profile; services read
//! anyone's.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use service_kit::{ApiJson, Problem};
use tessera_auth::{Authenticated, Principal};
use tessera_events::OutboxMessage;
use utoipa::ToSchema;

use super::error::ApiError;
use super::schema::{
    BodyTooLarge, Forbidden, InvalidBody, MultipleCredentials, PROBLEM_JSON, ProblemDoc,
    Unauthenticated, Unavailable, UnsupportedMediaType,
};
use crate::db;
use crate::db::profiles::{CreateError, ProfileRow};
use crate::events::UserCreated;
use crate::fields::{DisplayName, Email, Locale, Phone};
use crate::state::AppState;

/// Role of service clients allowed to read every profile (notification, for instance).
pub const SERVICE_ROLE: &str = "service";

/// Whether the user wants messages on each channel. Notifications marked `critical`
/// (security alerts) are sent regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    #[serde(default = "yes")]
    pub email: bool,
    #[serde(default = "yes")]
    pub sms: bool,
    #[serde(default = "yes")]
    pub push: bool,
}

fn yes() -> bool {
    true
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            email: true,
            sms: true,
            push: true,
        }
    }
}

impl From<&ProfileRow> for Preferences {
    fn from(row: &ProfileRow) -> Self {
        Self {
            email: row.notify_email,
            sms: row.notify_sms,
            push: row.notify_push,
        }
    }
}

/// A new profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProfile {
    /// Where email notifications go.
    #[schema(format = Email, example = "ada@example.com")]
    pub email: String,
    /// 1 to 100 characters, trimmed.
    #[schema(example = "Ada Lovelace", min_length = 1, max_length = 100)]
    pub display_name: String,
    /// BCP 47 tag choosing the language of messages, e.g. `en`, `de-CH`, `zh-Hant-TW`
    /// (any case; `_` for `-` is accepted too).
    #[schema(
        example = "en",
        pattern = r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?$"
    )]
    pub locale: String,
    /// E.164 mobile number for SMS, e.g. `+41791234567`.
    #[serde(default)]
    #[schema(example = "+41791234567", nullable = false)]
    pub phone: Option<String>,
    /// Channels the user accepts; every channel when absent.
    #[serde(default)]
    pub preferences: Preferences,
}

/// Changes to a profile: members left out stay as they are; `"phone": null` removes
/// the phone number.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChanges {
    #[schema(format = Email, nullable = false)]
    pub email: Option<String>,
    #[schema(nullable = false, min_length = 1, max_length = 100)]
    pub display_name: Option<String>,
    #[schema(
        nullable = false,
        pattern = r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?$"
    )]
    pub locale: Option<String>,
    #[allow(
        clippy::option_option,
        reason = "absent, null and a value mean three things here"
    )]
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[schema(nullable = false)]
    pub preferences: Option<Preferences>,
}

/// Distinguishes a member set to `null` (`Some(None)`) from one left out (`None`).
#[allow(
    clippy::option_option,
    reason = "absent, null and a value mean three things here"
)]
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A profile as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    /// The user's id, the `sub` of their access tokens.
    pub user_id: String,
    #[schema(format = Email)]
    pub email: String,
    #[schema(min_length = 1, max_length = 100)]
    pub display_name: String,
    /// Canonical BCP 47 tag.
    #[schema(pattern = r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$")]
    pub locale: String,
    /// E.164, absent when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub phone: Option<String>,
    pub preferences: Preferences,
    /// Unix time in seconds.
    pub created_at: i64,
    /// Unix time in seconds.
    pub updated_at: i64,
}

impl From<ProfileRow> for Profile {
    fn from(row: ProfileRow) -> Self {
        Self {
            preferences: Preferences::from(&row),
            user_id: row.user_id,
            email: row.email,
            display_name: row.display_name,
            locale: row.locale,
            phone: row.phone,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn not_found() -> ApiError {
    Problem::new(StatusCode::NOT_FOUND, "profile_not_found")
        .detail("This user has no profile yet.")
        .into()
}

/// Users are people: a service client acting for itself has no profile of its own.
fn require_user(caller: &Principal) -> Result<(), ApiError> {
    if caller.is_service() {
        return Err(Problem::new(StatusCode::FORBIDDEN, "not_a_user")
            .detail("Service clients have no profile of their own.")
            .into());
    }
    Ok(())
}

/// Create my profile
///
/// Creates the caller's profile and announces it with the event
/// `dev.tessera.profile.user.created.v1`, written in the same transaction.
#[utoipa::path(
    post,
    path = "/v1/profiles",
    tag = "profiles",
    security(("bearer" = [])),
    request_body(content = NewProfile, content_type = "application/json"),
    responses(
        (status = 201, description = "The new profile.", body = Profile),
        (status = 400, description = "`invalid_email`, `invalid_display_name`, `invalid_locale`, \
            `invalid_phone`, `invalid_json` or `multiple_credentials`.",
            body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`not_a_user`: service clients have no profile.",
            body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 409, description = "`profile_exists`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 415, response = UnsupportedMediaType),
        (status = 413, response = BodyTooLarge),
        (status = 422, response = InvalidBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<NewProfile>,
) -> Result<(StatusCode, Json<Profile>), ApiError> {
    require_user(&caller)?;
    let now = state.clock.now();
    let row = ProfileRow {
        user_id: caller.subject,
        email: Email::parse(&body.email)?.into_string(),
        display_name: DisplayName::parse(&body.display_name)?.into_string(),
        locale: Locale::parse(&body.locale)?.into_string(),
        phone: body
            .phone
            .as_deref()
            .map(Phone::parse)
            .transpose()?
            .map(Phone::into_string),
        notify_email: body.preferences.email,
        notify_sms: body.preferences.sms,
        notify_push: body.preferences.push,
        created_at: now.unix_timestamp(),
        updated_at: now.unix_timestamp(),
    };
    let event = OutboxMessage::new(&UserCreated::from(&row), now);
    match db::profiles::create(&state.pool, &row, &event).await {
        Ok(()) => {
            state.relay.notify();
            Ok((StatusCode::CREATED, Json(row.into())))
        }
        Err(CreateError::Exists) => Err(Problem::new(StatusCode::CONFLICT, "profile_exists")
            .detail("This user already has a profile; change it with PATCH /v1/profiles/me.")
            .into()),
        Err(CreateError::Db(error)) => Err(error.into()),
    }
}

/// My profile
#[utoipa::path(
    get,
    path = "/v1/profiles/me",
    tag = "profiles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's profile.", body = Profile),
        (status = 400, response = MultipleCredentials),
        (status = 401, response = Unauthenticated),
        (status = 404, description = "`profile_not_found`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 503, response = Unavailable),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<Profile>, ApiError> {
    let row = db::profiles::get(&state.pool, &caller.subject).await?;
    row.map(|row| Json(row.into())).ok_or_else(not_found)
}

/// Change my profile
#[utoipa::path(
    patch,
    path = "/v1/profiles/me",
    tag = "profiles",
    security(("bearer" = [])),
    request_body(content = ProfileChanges, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed profile.", body = Profile),
        (status = 400, description = "`invalid_email`, `invalid_display_name`, `invalid_locale`, \
            `invalid_phone`, `invalid_json` or `multiple_credentials`.",
            body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 404, description = "`profile_not_found`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 415, response = UnsupportedMediaType),
        (status = 413, response = BodyTooLarge),
        (status = 422, response = InvalidBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(changes): ApiJson<ProfileChanges>,
) -> Result<Json<Profile>, ApiError> {
    let mut row = db::profiles::get(&state.pool, &caller.subject)
        .await?
        .ok_or_else(not_found)?;
    if let Some(email) = &changes.email {
        row.email = Email::parse(email)?.into_string();
    }
    if let Some(name) = &changes.display_name {
        row.display_name = DisplayName::parse(name)?.into_string();
    }
    if let Some(locale) = &changes.locale {
        row.locale = Locale::parse(locale)?.into_string();
    }
    if let Some(phone) = &changes.phone {
        row.phone = phone
            .as_deref()
            .map(Phone::parse)
            .transpose()?
            .map(Phone::into_string);
    }
    if let Some(preferences) = changes.preferences {
        row.notify_email = preferences.email;
        row.notify_sms = preferences.sms;
        row.notify_push = preferences.push;
    }
    row.updated_at = state.clock.now().unix_timestamp();
    if !db::profiles::update(&state.pool, &row).await? {
        return Err(not_found());
    }
    Ok(Json(row.into()))
}

/// A user's profile
///
/// Users may read their own; holders of the `service` role may read anyone's.
#[utoipa::path(
    get,
    path = "/v1/profiles/{user_id}",
    tag = "profiles",
    security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id (`sub`).")),
    responses(
        (status = 200, description = "The profile.", body = Profile),
        (status = 400, response = MultipleCredentials),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, description = "`profile_not_found`.", body = ProblemDoc, content_type = PROBLEM_JSON),
        (status = 503, response = Unavailable),
    )
)]
pub async fn by_user(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    // Checked before any lookup, so others cannot learn which users have a profile.
    if caller.subject != user_id {
        caller.require_role(SERVICE_ROLE)?;
    }
    let row = db::profiles::get(&state.pool, &user_id).await?;
    row.map(|row| Json(row.into())).ok_or_else(not_found)
}
