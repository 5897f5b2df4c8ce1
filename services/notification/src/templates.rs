//! Message templates: one file per template, locale and part, rendered with minijinja.
//!
//! A file is named `<template>.<locale>.<part>.j2` (flat, so a ConfigMap can hold the
//! directory), where part is `subject` (email subject), `email`, `sms` or `push`.
//! Defaults are embedded; files of `--templates-dir` add templates or replace embedded
//! ones of the same name. Every file is compiled and test-rendered at start, so a broken
//! template stops the process with one line naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use minijinja::Environment;
use serde_json::Value;

use crate::channel::ChannelKind;

/// The embedded default templates.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "welcome.en.subject.j2",
        include_str!("../templates/welcome.en.subject.j2"),
    ),
    (
        "welcome.en.email.j2",
        include_str!("../templates/welcome.en.email.j2"),
    ),
    (
        "welcome.en.sms.j2",
        include_str!("../templates/welcome.en.sms.j2"),
    ),
    (
        "welcome.en.push.j2",
        include_str!("../templates/welcome.en.push.j2"),
    ),
    (
        "welcome.de.subject.j2",
        include_str!("../templates/welcome.de.subject.j2"),
    ),
    (
        "welcome.de.email.j2",
        include_str!("../templates/welcome.de.email.j2"),
    ),
    (
        "welcome.de.sms.j2",
        include_str!("../templates/welcome.de.sms.j2"),
    ),
    (
        "welcome.de.push.j2",
        include_str!("../templates/welcome.de.push.j2"),
    ),
    (
        "welcome.fr.subject.j2",
        include_str!("../templates/welcome.fr.subject.j2"),
    ),
    (
        "welcome.fr.email.j2",
        include_str!("../templates/welcome.fr.email.j2"),
    ),
    (
        "welcome.fr.sms.j2",
        include_str!("../templates/welcome.fr.sms.j2"),
    ),
    (
        "welcome.fr.push.j2",
        include_str!("../templates/welcome.fr.push.j2"),
    ),
];

/// The template of the welcome message sent for `user.created`.
pub const WELCOME: &str = "welcome";

/// Why templates could not be loaded or a message rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The templates directory or a file in it could not be read.
    #[error("templates: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A file name is not `<template>.<locale>.<part>.j2`.
    #[error(
        "templates: {file}: expected a name `<template>.<locale>.<part>.j2` with part subject, email, sms or push"
    )]
    Name { file: String },
    /// A template does not compile or fails its test rendering.
    #[error("templates: {file}: {detail}")]
    Invalid { file: String, detail: String },
    /// A template's email body has no subject in the same locale, or the reverse.
    #[error("templates: {template}.{locale}: an email needs both `subject` and `email` files")]
    Incomplete { template: String, locale: String },
    /// A template has no variant in the default locale to fall back on.
    #[error("templates: {template} has no `{locale}` (default locale) variant")]
    NoDefault { template: String, locale: String },
    /// Rendering a message failed (e.g. a filter failed on the data).
    #[error("rendering {name}: {detail}")]
    Render { name: String, detail: String },
    /// No template of that name for that channel.
    #[error("no template {template} for {channel}")]
    Missing {
        template: String,
        channel: &'static str,
    },
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Email subject (email only).
    pub subject: Option<String>,
    pub body: String,
}

/// All templates, compiled.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    /// template → locale → parts present.
    index: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    default_locale: String,
}

fn part_of(channel: ChannelKind) -> &'static str {
    match channel {
        ChannelKind::Email => "email",
        ChannelKind::Sms => "sms",
        ChannelKind::Push => "push",
    }
}

/// What the test rendering at start passes: what every welcome-like template may use.
fn sample_context() -> Value {
    serde_json::json!({
        "display_name": "Ada Lovelace",
        "email": "ada@example.com",
        "user_id": "00000000-0000-7000-8000-000000000000",
        "locale": "en",
        "phone": "+41791234567",
        "data": {},
    })
}

impl Templates {
    /// The embedded templates plus those of `dir`, all compiled and test-rendered.
    pub fn load(dir: Option<&Path>, default_locale: &str) -> Result<Self, TemplateError> {
        let mut sources: BTreeMap<String, String> = EMBEDDED
            .iter()
            .map(|(name, source)| ((*name).to_owned(), (*source).to_owned()))
            .collect();
        if let Some(dir) = dir {
            let read_error = |source| TemplateError::Read {
                path: dir.display().to_string(),
                source,
            };
            for entry in std::fs::read_dir(dir).map_err(read_error)? {
                let path = entry.map_err(read_error)?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                // Kubernetes mounts ConfigMaps with `..data` links and dot directories.
                if name.starts_with('.') || path.is_dir() {
                    continue;
                }
                let source =
                    std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                        path: path.display().to_string(),
                        source,
                    })?;
                sources.insert(name.to_owned(), source);
            }
        }
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .map_err(|e| TemplateError::Invalid {
                    file: "(syntax)".into(),
                    detail: e.to_string(),
                })?,
        );
        let mut index: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for (file, source) in sources {
            let parts: Vec<&str> = file.split('.').collect();
            let [template, locale, part, "j2"] = parts.as_slice() else {
                return Err(TemplateError::Name { file });
            };
            if !["subject", "email", "sms", "push"].contains(part)
                || template.is_empty()
                || locale.is_empty()
            {
                return Err(TemplateError::Name { file });
            }
            let name = format!("{template}.{locale}.{part}");
            env.add_template_owned(name.clone(), source)
                .map_err(|e| TemplateError::Invalid {
                    file: file.clone(),
                    detail: e.to_string(),
                })?;
            env.get_template(&name)
                .and_then(|t| {
                    t.render(minijinja::Value::from(minijinja::value::Serde(
                        sample_context(),
                    )))
                })
                .map_err(|e| TemplateError::Invalid {
                    file: file.clone(),
                    detail: e.to_string(),
                })?;
            index
                .entry((*template).to_owned())
                .or_default()
                .entry((*locale).to_owned())
                .or_default()
                .insert((*part).to_owned());
        }
        for (template, locales) in &index {
            for (locale, parts) in locales {
                if parts.contains("email") != parts.contains("subject") {
                    return Err(TemplateError::Incomplete {
                        template: template.clone(),
                        locale: locale.clone(),
                    });
                }
            }
            if !locales.contains_key(default_locale) {
                return Err(TemplateError::NoDefault {
                    template: template.clone(),
                    locale: default_locale.to_owned(),
                });
            }
        }
        Ok(Self {
            env,
            index,
            default_locale: default_locale.to_owned(),
        })
    }

    /// Whether `template` can be sent on `channel` (its default locale has that part).
    pub fn supports(&self, template: &str, channel: ChannelKind) -> bool {
        self.index
            .get(template)
            .and_then(|locales| locales.get(&self.default_locale))
            .is_some_and(|parts| parts.contains(part_of(channel)))
    }

    /// The locale used for `wanted`: itself, its language (`de` for `de-CH`), or the
    /// default locale.
    fn pick_locale(&self, template: &str, channel: ChannelKind, wanted: &str) -> String {
        let part = part_of(channel);
        let locales = self.index.get(template);
        let has = |locale: &str| {
            locales
                .and_then(|l| l.get(locale))
                .is_some_and(|parts| parts.contains(part))
        };
        let language = wanted.split('-').next().unwrap_or_default();
        [wanted, language]
            .into_iter()
            .find(|candidate| has(candidate))
            .unwrap_or(&self.default_locale)
            .to_owned()
    }

    /// Renders `template` for `channel` in the best locale for `locale`.
    pub fn render(
        &self,
        template: &str,
        channel: ChannelKind,
        locale: &str,
        context: &Value,
    ) -> Result<Rendered, TemplateError> {
        if !self.supports(template, channel) {
            return Err(TemplateError::Missing {
                template: template.to_owned(),
                channel: part_of(channel),
            });
        }
        let locale = self.pick_locale(template, channel, locale);
        let context = minijinja::Value::from(minijinja::value::Serde(context));
        let render = |part: &str| {
            let name = format!("{template}.{locale}.{part}");
            self.env
                .get_template(&name)
                .and_then(|t| t.render(context.clone()))
                .map_err(|e| TemplateError::Render {
                    name,
                    detail: e.to_string(),
                })
        };
        let subject = if channel == ChannelKind::Email {
            Some(render("subject")?.trim().to_owned())
        } else {
            None
        };
        Ok(Rendered {
            subject,
            body: render(part_of(channel))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Value {
        serde_json::json!({ "display_name": "Ada" })
    }

    #[test]
    fn the_locale_falls_back_to_the_language_then_the_default() {
        let templates = Templates::load(None, "en").expect("embedded templates load");
        let de = templates
            .render(WELCOME, ChannelKind::Email, "de-CH", &context())
            .unwrap();
        assert_eq!(de.subject.as_deref(), Some("Willkommen bei Tessera, Ada"));
        let unknown = templates
            .render(WELCOME, ChannelKind::Sms, "ja-JP", &context())
            .unwrap();
        assert!(
            unknown.body.starts_with("Welcome to Tessera, Ada"),
            "{unknown:?}"
        );
    }

    #[test]
    fn a_broken_mounted_template_is_one_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("welcome.it.sms.j2"), "Ciao {{ display_name").unwrap();
        let error = Templates::load(Some(dir.path()), "en")
            .unwrap_err()
            .to_string();
        assert!(error.contains("welcome.it.sms.j2"), "{error}");
        assert!(!error.contains('\n'), "{error}");

        std::fs::write(
            dir.path().join("welcome.it.sms.j2"),
            "{{ display_name | nosuch }}",
        )
        .unwrap();
        let error = Templates::load(Some(dir.path()), "en")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("welcome.it.sms.j2"),
            "an unknown filter is found at start: {error}"
        );

        std::fs::remove_file(dir.path().join("welcome.it.sms.j2")).unwrap();
        std::fs::write(dir.path().join("reset.fr.email.j2"), "x").unwrap();
        assert!(
            Templates::load(Some(dir.path()), "en").is_err(),
            "email without subject"
        );
        std::fs::write(dir.path().join("reset.fr.subject.j2"), "x").unwrap();
        let error = Templates::load(Some(dir.path()), "en")
            .unwrap_err()
            .to_string();
        assert!(error.contains("no `en`"), "{error}");
    }

    #[test]
    fn mounted_templates_replace_embedded_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("welcome.en.sms.j2"),
            "Hi {{ display_name }}",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path()), "en").unwrap();
        let sms = templates
            .render(WELCOME, ChannelKind::Sms, "en", &context())
            .unwrap();
        assert_eq!(sms.body, "Hi Ada");
    }
}
