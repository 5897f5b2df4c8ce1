//! The validated values a profile is made of. Each is built only through `parse`, so a
//! value of these types in the service has already passed its checks.

use std::fmt;

/// Longest display name, in characters: room for any real name, small enough for every
/// email header and SMS greeting a template puts it in.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// Longest email address (RFC 5321 path limit).
const MAX_EMAIL_BYTES: usize = 254;

/// Why a field was refused; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The display name is empty, too long or holds control characters.
    #[error(
        "display_name must be 1 to {MAX_DISPLAY_NAME_CHARS} characters without control characters"
    )]
    DisplayName,
    /// The locale is not a BCP 47 tag of the supported shape.
    #[error("locale must be a BCP 47 language tag such as `en`, `de-CH` or `zh-Hant-TW`")]
    Locale,
    /// The phone number is not in E.164 form.
    #[error("phone must be an E.164 number such as `+41791234567` (8 to 15 digits after `+`)")]
    Phone,
    /// The email address is not plausible.
    #[error("email must be an address such as `ada@example.com`")]
    Email,
}

impl FieldError {
    /// The stable problem code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::DisplayName => "invalid_display_name",
            Self::Locale => "invalid_locale",
            Self::Phone => "invalid_phone",
            Self::Email => "invalid_email",
        }
    }
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        let length = name.chars().count();
        if length == 0 || length > MAX_DISPLAY_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(FieldError::DisplayName);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A BCP 47 language tag of the shape templates are chosen by: a 2–3 letter language,
/// an optional 4-letter script and an optional region (2 letters or 3 digits). Stored in
/// canonical case: `de-CH`, `zh-Hant-TW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let mut parts = raw.trim().split(['-', '_']);
        let language = parts.next().unwrap_or_default();
        if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_alphabetic())
        {
            return Err(FieldError::Locale);
        }
        let mut tag = language.to_ascii_lowercase();
        let mut rest: Vec<&str> = parts.collect();
        if let Some(script) = rest.first().copied()
            && script.len() == 4
            && script.chars().all(|c| c.is_ascii_alphabetic())
        {
            tag.push('-');
            tag.push_str(&script[..1].to_ascii_uppercase());
            tag.push_str(&script[1..].to_ascii_lowercase());
            rest.remove(0);
        }
        match rest.as_slice() {
            [] => {}
            [region]
                if (region.len() == 2 && region.chars().all(|c| c.is_ascii_alphabetic()))
                    || (region.len() == 3 && region.chars().all(|c| c.is_ascii_digit())) =>
            {
                tag.push('-');
                tag.push_str(&region.to_ascii_uppercase());
            }
            _ => return Err(FieldError::Locale),
        }
        Ok(Self(tag))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A phone number in E.164 form (`+` and 8 to 15 digits, no leading zero). Spaces,
/// dashes, dots and parentheses people type are removed first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').ok_or(FieldError::Phone)?;
        if !(8..=15).contains(&digits.len())
            || !digits.chars().all(|c| c.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(FieldError::Phone);
        }
        Ok(Self(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A contact email address: one `@`, a non-empty local part, a dotted domain (stored in
/// lower case), no whitespace, and an address notification's mail library (lettre) can
/// put in a `To:` header — otherwise the welcome mail would fail for good after the
/// profile was stored. Deliverability is the mail server's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let address = raw.trim();
        let (local, domain) = address.rsplit_once('@').ok_or(FieldError::Email)?;
        let valid = address.len() <= MAX_EMAIL_BYTES
            && !local.is_empty()
            && !local.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !address.chars().any(|c| c.is_whitespace() || c.is_control());
        let domain = domain.to_ascii_lowercase();
        if !valid || lettre::Address::new(local, &domain).is_err() {
            return Err(FieldError::Email);
        }
        Ok(Self(format!("{local}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_are_stored_in_canonical_case() {
        for (raw, canonical) in [
            ("en", "en"),
            ("DE-ch", "de-CH"),
            ("de_CH", "de-CH"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("es-419", "es-419"),
        ] {
            assert_eq!(Locale::parse(raw).unwrap().as_str(), canonical, "{raw}");
        }
        for bad in [
            "", "e", "english", "en-", "en-CHE", "en-US-x", "12", "en US",
        ] {
            assert_eq!(Locale::parse(bad), Err(FieldError::Locale), "{bad}");
        }
    }

    #[test]
    fn phones_must_be_e164() {
        assert_eq!(
            Phone::parse("+41 79 123 45 67").unwrap().as_str(),
            "+41791234567"
        );
        for bad in [
            "0791234567",
            "+0791234567",
            "+1234",
            "+1234567890123456",
            "+41abc45678",
        ] {
            assert_eq!(Phone::parse(bad), Err(FieldError::Phone), "{bad}");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse(&"é".repeat(MAX_DISPLAY_NAME_CHARS)).is_ok());
        for bad in [
            String::new(),
            "   ".to_owned(),
            "é".repeat(MAX_DISPLAY_NAME_CHARS + 1),
            "a\u{7}b".to_owned(),
        ] {
            assert_eq!(DisplayName::parse(&bad), Err(FieldError::DisplayName));
        }
    }

    #[test]
    fn emails_keep_the_local_part_and_lower_the_domain() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").unwrap().as_str(),
            "Ada@example.com"
        );
        for bad in [
            "ada",
            "@example.com",
            "ada@localhost",
            "a da@example.com",
            "ada@.com",
            // Syntax lettre refuses in a mailbox: notification could never send to them.
            "a,b@example.com",
            "a\"b@example.com",
            "<a>@example.com",
        ] {
            assert_eq!(Email::parse(bad), Err(FieldError::Email), "{bad}");
        }
        for good in [
            "first.last+tag@example.co.uk",
            "o'brien@example.ie",
            "user_name-1@sub.example.org",
        ] {
            assert_eq!(Email::parse(good).unwrap().as_str(), good);
        }
    }
}
