//! Reading and writing the keyset JSON document, with errors that point at the key and member at fault.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{KEYSET_VERSION, Key, Keyset, KeysetError, PrivateKeyPem};

/// Only the version, read first so that a document from a newer format is reported as
/// "version N is not supported" rather than as whatever shape error it would cause.
#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

/// The document with its enums and timestamps still as strings, so that a bad value is
/// reported with the kid it belongs to. Unknown members are ignored (tolerant reader:
/// an older identity can read a keyset written by a newer operator of the same version).
#[derive(Deserialize)]
struct RawKeyset {
    keys: Vec<RawKey>,
}

#[derive(Deserialize)]
struct RawKey {
    kid: String,
    alg: String,
    state: String,
    created_at: String,
    #[serde(default)]
    activated_at: Option<String>,
    #[serde(default)]
    retiring_at: Option<String>,
    #[serde(default)]
    remove_after: Option<String>,
    private_key_pem: String,
}

impl RawKey {
    fn into_key(self) -> Result<Key, KeysetError> {
        let kid = self.kid;
        let alg = self
            .alg
            .parse()
            .map_err(|_| KeysetError::UnknownAlgorithm {
                kid: kid.clone(),
                alg: self.alg,
            })?;
        let state = self.state.parse().map_err(|_| KeysetError::UnknownState {
            kid: kid.clone(),
            state: self.state,
        })?;
        let timestamp = |field: &'static str, value: String| {
            OffsetDateTime::parse(&value, &Rfc3339).map_err(|_| KeysetError::InvalidTimestamp {
                kid: kid.clone(),
                field,
                value,
            })
        };
        let optional =
            |field, value: Option<String>| value.map(|v| timestamp(field, v)).transpose();
        Ok(Key {
            created_at: timestamp("created_at", self.created_at)?,
            activated_at: optional("activated_at", self.activated_at)?,
            retiring_at: optional("retiring_at", self.retiring_at)?,
            remove_after: optional("remove_after", self.remove_after)?,
            private_key_pem: PrivateKeyPem::new(self.private_key_pem),
            kid,
            alg,
            state,
        })
    }
}

impl Keyset {
    /// Parses a keyset document and validates it ([`Keyset::validate`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeysetError> {
        let VersionProbe { version } = serde_json::from_slice(bytes).map_err(KeysetError::Json)?;
        if version != KEYSET_VERSION {
            return Err(KeysetError::UnsupportedVersion {
                version,
                supported: KEYSET_VERSION,
            });
        }
        let raw: RawKeyset = serde_json::from_slice(bytes).map_err(KeysetError::Json)?;
        let keys = raw
            .keys
            .into_iter()
            .map(RawKey::into_key)
            .collect::<Result<_, _>>()?;
        let keyset = Self { version, keys };
        keyset.validate()?;
        Ok(keyset)
    }

    /// The keyset as pretty-printed JSON with a final newline. Contains the private keys.
    ///
    /// # Panics
    ///
    /// If a timestamp is outside the years 0000 to 9999, which RFC 3339 cannot express;
    /// [`Keyset::validate`] refuses such keysets and [`crate::rotate`] never makes one.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self)
            .expect("a keyset with RFC 3339-expressible timestamps always serializes");
        json.push(b'\n');
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(key_fields: &str) -> String {
        format!(
            r#"{{"version": 1, "keys": [{{"kid": "k1", "alg": "EdDSA", "state": "active",
                "created_at": "2026-01-01T00:00:00Z", "activated_at": "2026-01-01T00:00:00Z",
                "private_key_pem": "x" {key_fields}}}]}}"#
        )
    }

    #[test]
    fn a_newer_version_is_reported_as_unsupported_even_if_its_shape_differs() {
        let err = Keyset::from_json(br#"{"version": 2, "signing_keys": {}}"#).unwrap_err();
        assert!(matches!(
            err,
            KeysetError::UnsupportedVersion {
                version: 2,
                supported: 1
            }
        ));
        assert_eq!(
            err.to_string(),
            "keyset version 2 is not supported; this build reads version 1"
        );
    }

    #[test]
    fn a_document_without_version_is_a_json_error_naming_the_member() {
        let err = Keyset::from_json(br#"{"keys": []}"#).unwrap_err();
        assert!(matches!(err, KeysetError::Json(_)));
        assert!(err.to_string().contains("version"), "{err}");
    }

    #[test]
    fn a_bad_timestamp_names_the_key_and_the_member() {
        let json = document(r#", "remove_after": "tomorrow""#);
        let err = Keyset::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key k1: remove_after \"tomorrow\" is not an RFC 3339 timestamp"
        );
    }

    #[test]
    fn an_unknown_alg_names_the_key_and_the_value() {
        let json = document("").replace("EdDSA", "HS256");
        let err = Keyset::from_json(json.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, KeysetError::UnknownAlgorithm { kid, alg } if kid == "k1" && alg == "HS256"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_keyset_round_trips() {
        let json = Keyset::empty().to_json();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            "{\n  \"version\": 1,\n  \"keys\": []\n}\n"
        );
        assert_eq!(Keyset::from_json(&json).unwrap(), Keyset::empty());
    }
}
