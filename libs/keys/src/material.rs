//! Private key material: reading a PKCS#8 PEM, deriving its public JWK and its RFC 7638 thumbprint.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
    RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType,
};

use crate::Algorithm;

/// The only PEM label accepted: unencrypted PKCS#8, the one format all three
/// algorithms share (PKCS#1 and SEC1 are per-algorithm and ambiguous to read back).
pub(crate) const PKCS8_LABEL: &str = "PRIVATE KEY";

/// Why a private key PEM cannot be used for the algorithm its key declares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateKeyError {
    /// The text is not a PEM document at all (no `-----BEGIN ...-----` block, bad base64).
    #[error("the text is not a PEM document")]
    NotPem,
    /// A PEM document, but not an unencrypted PKCS#8 private key (e.g. PKCS#1, SEC1, a public key).
    #[error("the PEM label is \"{label}\"; expected \"PRIVATE KEY\" (unencrypted PKCS#8)")]
    NotPkcs8 {
        /// The label found after `-----BEGIN `.
        label: String,
    },
    /// A usable private key, but for another algorithm than the key declares.
    #[error("the PEM holds {actual} key material but the key declares alg {declared}")]
    AlgorithmMismatch {
        /// The `alg` written next to the PEM.
        declared: Algorithm,
        /// The algorithm the PEM's key material is for.
        actual: Algorithm,
    },
    /// PKCS#8 that no supported algorithm accepts (another curve, RSA below 2048 bits, corrupt).
    #[error(
        "the PEM is not a usable {declared} private key (supported: Ed25519, P-256, RSA 2048 to 8192 bits)"
    )]
    Unusable {
        /// The `alg` written next to the PEM.
        declared: Algorithm,
    },
}

/// The public half of a key pair, as the raw numbers a JWK is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// Ed25519 public key (32 bytes).
    Ed25519 { x: Vec<u8> },
    /// P-256 point coordinates (32 bytes each).
    P256 { x: Vec<u8>, y: Vec<u8> },
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// Reads a PKCS#8 PEM and checks it is a usable private key for `alg`.
pub(crate) fn read(pem_text: &str, alg: Algorithm) -> Result<PublicKey, PrivateKeyError> {
    let document = pem::parse(pem_text).map_err(|_| PrivateKeyError::NotPem)?;
    if document.tag() != PKCS8_LABEL {
        return Err(PrivateKeyError::NotPkcs8 {
            label: document.tag().to_owned(),
        });
    }
    let der = document.contents();
    if let Some(public) = public_key(alg, der) {
        return Ok(public);
    }
    // Say which algorithm the material is for when we can: "this is an RSA key" is
    // the message that gets a mislabelled keyset fixed.
    match Algorithm::ALL
        .into_iter()
        .filter(|other| *other != alg)
        .find(|other| public_key(*other, der).is_some())
    {
        Some(actual) => Err(PrivateKeyError::AlgorithmMismatch {
            declared: alg,
            actual,
        }),
        None => Err(PrivateKeyError::Unusable { declared: alg }),
    }
}

/// Parses PKCS#8 DER as a key pair of `alg` and returns its public key.
fn public_key(alg: Algorithm, der: &[u8]) -> Option<PublicKey> {
    match alg {
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(der).ok()?;
            Some(PublicKey::Ed25519 {
                x: pair.public_key().as_ref().to_vec(),
            })
        }
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).ok()?;
            // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
            let point = pair.public_key().as_ref();
            let (tag, coordinates) = point.split_first()?;
            if *tag != 0x04 || coordinates.len() != 64 {
                return None;
            }
            let (x, y) = coordinates.split_at(32);
            Some(PublicKey::P256 {
                x: x.to_vec(),
                y: y.to_vec(),
            })
        }
        Algorithm::RS256 => {
            // aws-lc accepts 2048 to 8192-bit keys here, which is the range we want.
            let pair = RsaKeyPair::from_pkcs8(der).ok()?;
            let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            Some(PublicKey::Rsa {
                n: components.n,
                e: components.e,
            })
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl PublicKey {
    /// RFC 7638 JWK thumbprint with SHA-256, base64url without padding.
    ///
    /// The canonical form is the required members only, in lexicographic order, with no
    /// whitespace (RFC 7638 §3.2; RFC 8037 §2 for OKP).
    pub(crate) fn thumbprint(&self) -> String {
        let canonical = match self {
            Self::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x))
            }
            Self::P256 { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64(x),
                b64(y)
            ),
            Self::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n))
            }
        };
        b64(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// The public JWK with `kid`, `alg` and `use: sig`, as published in the JWKS.
    pub(crate) fn to_jwk(&self, kid: &str, alg: Algorithm) -> Jwk {
        let key_algorithm = match alg {
            Algorithm::EdDSA => KeyAlgorithm::EdDSA,
            Algorithm::ES256 => KeyAlgorithm::ES256,
            Algorithm::RS256 => KeyAlgorithm::RS256,
        };
        let algorithm = match self {
            Self::Ed25519 { x } => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: b64(x),
            }),
            Self::P256 { x, y } => AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: b64(x),
                y: b64(y),
            }),
            Self::Rsa { n, e } => AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: b64(n),
                e: b64(e),
            }),
        };
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(key_algorithm),
                key_id: Some(kid.to_owned()),
                ..CommonParameters::default()
            },
            algorithm,
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::jwk::ThumbprintHash;

    use super::*;

    #[test]
    fn the_rsa_thumbprint_matches_the_rfc_7638_example() {
        // RFC 7638 §3.1: the example key and its expected SHA-256 thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let public = PublicKey::Rsa {
            n: URL_SAFE_NO_PAD.decode(n).unwrap(),
            e: URL_SAFE_NO_PAD.decode("AQAB").unwrap(),
        };
        assert_eq!(
            public.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn the_okp_thumbprint_matches_the_rfc_8037_example() {
        // RFC 8037 Appendix A.3: thumbprint of the example Ed25519 public key.
        let public = PublicKey::Ed25519 {
            x: URL_SAFE_NO_PAD
                .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
                .unwrap(),
        };
        assert_eq!(
            public.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn the_thumbprint_agrees_with_jsonwebtoken_for_an_ec_key() {
        let public = PublicKey::P256 {
            x: vec![7; 32],
            y: vec![9; 32],
        };
        let jwk = public.to_jwk("kid", Algorithm::ES256);
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            public.thumbprint()
        );
    }

    #[test]
    fn a_pkcs1_rsa_pem_is_refused_with_its_label() {
        let pem_text = pem::encode(&pem::Pem::new("RSA PRIVATE KEY", vec![1, 2, 3]));
        assert_eq!(
            read(&pem_text, Algorithm::RS256),
            Err(PrivateKeyError::NotPkcs8 {
                label: "RSA PRIVATE KEY".to_owned()
            })
        );
    }

    #[test]
    fn pkcs8_bytes_that_no_algorithm_accepts_are_unusable() {
        let pem_text = pem::encode(&pem::Pem::new(PKCS8_LABEL, vec![0x30, 0x03, 2, 1, 0]));
        assert_eq!(
            read(&pem_text, Algorithm::EdDSA),
            Err(PrivateKeyError::Unusable {
                declared: Algorithm::EdDSA
            })
        );
    }
}
