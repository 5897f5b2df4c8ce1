//! Email addresses as identity stores them: trimmed and lowercased, so one mailbox is one
//! account whatever the caller's capitalisation.

use std::fmt;

/// Longest address accepted (RFC 5321 path limit).
const MAX_LEN: usize = 254;

/// A normalised email address. Built only through [`Email::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why an address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected an email address like name@example.com")]
pub struct InvalidEmail;

impl Email {
    /// Normalises and checks the shape (`local@domain.tld`, no spaces or control
    /// characters, at most 254 characters). Deliverability is not checked here.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.split_once('@').ok_or(InvalidEmail)?;
        let well_formed = !local.is_empty()
            && local.len() <= 64
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && email.len() <= MAX_LEN
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if well_formed {
            Ok(Self(email))
        } else {
            Err(InvalidEmail)
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
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
    fn addresses_are_trimmed_and_lowercased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.0),
            Ok("ada@example.com".into())
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a b@example.com",
            "ada@@example.com",
            "ada@.example.com",
            "ada@example.com.",
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidEmail), "{bad:?}");
        }
        assert_eq!(
            Email::parse(&format!("{}@example.com", "a".repeat(65))),
            Err(InvalidEmail)
        );
    }
}
