//! Access-token verification on arbitrary input: the public `Verifier` with a fixed JWKS
//! (one Ed25519 key) must answer every input with `Ok` or a `VerifyError`, never panic.
//!
//! The first byte picks the shape. Odd: the rest is the token text as a client sends it
//! (header parsing, base64, algorithm and `kid` checks). Even: the rest is split into a
//! header and a payload that are signed with the published key, so the fuzzer reaches
//! the claim decoding and checks, which an unsigned token never gets to.
#![no_main]

use std::sync::{Arc, LazyLock};

use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use tessera_auth::{JwkSet, StaticJwks, Verifier, VerifierConfig};
use tessera_keys::KeyState;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    verifier: Arc<Verifier>,
    encoding: EncodingKey,
    kid: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let generated = tessera_keys::generate(tessera_keys::Algorithm::EdDSA).expect("generates");
    let key = generated.into_key(KeyState::Active, time::OffsetDateTime::now_utc());
    let encoding =
        EncodingKey::from_ed_pem(key.private_key_pem.expose().as_bytes()).expect("PEM loads");
    let jwks = JwkSet {
        keys: vec![key.public_jwk().expect("public JWK")],
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = VerifierConfig::new("https://identity.test", vec!["profile".to_owned()]);
    let verifier = Verifier::new(config, Arc::new(StaticJwks::new(jwks)));
    runtime
        .block_on(verifier.refresh())
        .expect("static keys load");
    Fixture {
        runtime,
        verifier,
        encoding,
        kid: key.kid.clone(),
    }
});

fn b64(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    // URL-safe base64 without padding, written here to keep the target's dependencies
    // to the crates under test.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 63;
            let _ = write!(out, "{}", ALPHABET[index as usize] as char);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 1 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        text.to_owned()
    } else {
        // Header and payload split at the first 0xFF byte (never in valid UTF-8 JSON).
        // Mode 0 keeps the fuzzer's header; mode 2.. uses the header identity writes, so
        // most inputs reach the claims.
        let (header, payload) = match rest.iter().position(|&b| b == 0xFF) {
            Some(at) if mode == 0 => (rest[..at].to_vec(), &rest[at + 1..]),
            _ => (
                format!(
                    r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}"}}"#,
                    fixture.kid
                )
                .into_bytes(),
                rest,
            ),
        };
        let signing_input = format!("{}.{}", b64(&header), b64(payload));
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &fixture.encoding,
            Algorithm::EdDSA,
        )
        .expect("signs");
        format!("{signing_input}.{signature}")
    };
    let _ = fixture.runtime.block_on(fixture.verifier.verify(&token));
});
