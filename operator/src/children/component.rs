//! The components of a platform: the five built-in services, onboarded services, and the
//! managed NATS.

use crate::crd::{ComponentSpec, OnboardedService, Platform};

/// One deployable part of the platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// The API gateway.
    Gateway,
    /// The identity service.
    Identity,
    /// The logging service.
    Logging,
    /// The notification service.
    Notification,
    /// The profile service.
    Profile,
    /// An onboarded service, by name.
    Onboarded(String),
    /// The operator-managed NATS.
    Nats,
}

impl Component {
    /// The deployable components of `platform` (NATS aside), built-ins first.
    pub fn all(platform: &Platform) -> Vec<Component> {
        let mut all = vec![
            Component::Gateway,
            Component::Identity,
            Component::Logging,
            Component::Notification,
            Component::Profile,
        ];
        all.extend(
            platform
                .spec
                .services
                .iter()
                .map(|service| Component::Onboarded(service.name.clone())),
        );
        all
    }

    /// Name used in object names and the `app.kubernetes.io/name` label.
    pub fn name(&self) -> String {
        match self {
            Component::Gateway => "gateway".into(),
            Component::Identity => "identity".into(),
            Component::Logging => "logging".into(),
            Component::Notification => "notification".into(),
            Component::Profile => "profile".into(),
            Component::Onboarded(name) => name.clone(),
            Component::Nats => "nats".into(),
        }
    }

    /// `app.kubernetes.io/component`.
    pub fn role(&self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Identity => "identity",
            Component::Logging => "logging",
            Component::Notification => "notification",
            Component::Profile => "profile",
            Component::Onboarded(_) => "service",
            Component::Nats => "event-bus",
        }
    }

    /// Name of its condition in the status, e.g. `IdentityReady`.
    pub fn condition_type(&self) -> String {
        let name = self.name();
        let mut chars = name.chars();
        let capitalised: String = chars
            .next()
            .map(|c| c.to_ascii_uppercase())
            .into_iter()
            .chain(chars)
            .filter(char::is_ascii_alphanumeric)
            .collect();
        format!("{capitalised}Ready")
    }

    /// Whether it gets a service client (id and secret, role `service`) to call other
    /// services and ship its logs. Identity signs its own token; NATS calls nobody.
    pub fn has_client(&self) -> bool {
        !matches!(self, Component::Identity | Component::Nats)
    }

    /// Whether it keeps a database.
    pub fn has_database(&self) -> bool {
        matches!(
            self,
            Component::Identity | Component::Logging | Component::Notification | Component::Profile
        )
    }

    /// Database settings of a built-in component with one.
    pub(crate) fn spec<'a>(&self, platform: &'a Platform) -> Option<&'a ComponentSpec> {
        match self {
            Component::Identity => Some(&platform.spec.identity.component),
            Component::Logging => Some(&platform.spec.logging.component),
            Component::Notification => Some(&platform.spec.notification.component),
            Component::Profile => Some(&platform.spec.profile),
            _ => None,
        }
    }

    /// The onboarded service's spec.
    pub(crate) fn onboarded<'a>(&self, platform: &'a Platform) -> Option<&'a OnboardedService> {
        match self {
            Component::Onboarded(name) => platform.spec.services.iter().find(|s| &s.name == name),
            _ => None,
        }
    }
}
