//! Test keys and tokens for the benchmark: an ES256 key (the algorithm `haproxy` and the
//! gateway both verify) and an EdDSA key (which `haproxy` 2.6 cannot), published together
//! in one JWKS, each with one long-lived access token and a file of many tokens of distinct
//! users, so a verifier that caches verified tokens is measured on a realistic mix rather
//! than on one token repeated.

use std::fs;
use std::path::Path;

use anyhow::Context as _;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use tessera_auth::{AccessClaims, Audience, JwkSet};
use tessera_keys::{Algorithm, Key, KeyState, SigningKey, generate};
use time::{Duration, OffsetDateTime};

/// Token lifetime: long enough for any run, short enough that a stray file is harmless.
const TOKEN_LIFETIME: Duration = Duration::days(1);

/// Writes `es256.pem`, `es256-public.pem`, `eddsa.pem`, `jwks.json`, `es256.jwt`,
/// `eddsa.jwt`, and `es256.tokens` / `eddsa.tokens` (`count` tokens each, one per line)
/// into `dir`.
pub(crate) fn write(dir: &Path, issuer: &str, audience: &str, count: usize) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let now = OffsetDateTime::now_utc();
    let es256 = new_key(Algorithm::ES256, now)?;
    let eddsa = new_key(Algorithm::EdDSA, now)?;

    let jwks = JwkSet {
        keys: vec![es256.public_jwk()?, eddsa.public_jwk()?],
    };
    let files = [
        ("es256.pem", es256.private_key_pem.expose().to_owned()),
        ("es256-public.pem", public_key_pem(&es256)?),
        ("eddsa.pem", eddsa.private_key_pem.expose().to_owned()),
        ("jwks.json", serde_json::to_string_pretty(&jwks)?),
        ("es256.jwt", token(&es256, issuer, audience, now, 0)?),
        ("eddsa.jwt", token(&eddsa, issuer, audience, now, 0)?),
        (
            "es256.tokens",
            tokens(&es256, issuer, audience, now, count)?,
        ),
        (
            "eddsa.tokens",
            tokens(&eddsa, issuer, audience, now, count)?,
        ),
    ];
    for (name, content) in files {
        let path = dir.join(name);
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A freshly generated key, active now.
fn new_key(alg: Algorithm, now: OffsetDateTime) -> anyhow::Result<Key> {
    let generated = generate(alg)?;
    Ok(generated.into_key(KeyState::Active, now))
}

/// The P-256 public key as an X.509 `SubjectPublicKeyInfo` PEM, the form `haproxy`'s
/// `jwt_verify` loads (it has no JWKS support).
fn public_key_pem(key: &Key) -> anyhow::Result<String> {
    let private = pem::parse(key.private_key_pem.expose())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, private.contents())
        .map_err(|e| anyhow::anyhow!("reading the ES256 key: {e}"))?;
    let der = pair
        .public_key()
        .as_der()
        .map_err(|e| anyhow::anyhow!("encoding the ES256 public key: {e}"))?;
    Ok(pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref())))
}

/// `count` tokens of users 1..=count, one per line.
fn tokens(
    key: &Key,
    issuer: &str,
    audience: &str,
    now: OffsetDateTime,
    count: usize,
) -> anyhow::Result<String> {
    let mut lines = String::new();
    for user in 1..=count {
        lines.push_str(&token(key, issuer, audience, now, user)?);
        lines.push('\n');
    }
    Ok(lines)
}

/// An access token for benchmark user number `user`, as identity would issue it.
fn token(
    key: &Key,
    issuer: &str,
    audience: &str,
    now: OffsetDateTime,
    user: usize,
) -> anyhow::Result<String> {
    let claims = AccessClaims {
        iss: issuer.to_owned(),
        sub: format!("bench-user-{user}"),
        aud: Audience::single(audience),
        exp: (now + TOKEN_LIFETIME).unix_timestamp(),
        iat: now.unix_timestamp(),
        nbf: now.unix_timestamp(),
        jti: format!("bench-{}-{user}", key.alg),
        roles: vec!["user".to_owned()],
        client_id: None,
    };
    Ok(SigningKey::from_key(key)?.sign(&claims)?)
}
