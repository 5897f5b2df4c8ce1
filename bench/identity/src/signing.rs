//! The limits measured in-process, without HTTP: JWT signing on one thread per algorithm,
//! and Argon2id password verification on every core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Argon2, Params, Version};
use tessera_auth::{AccessClaims, Audience};
use tessera_keys::{Algorithm, KeyState, SigningKey};
use time::OffsetDateTime;

use tessera_bench_report::Stats;

/// OWASP's Argon2id recommendation, and identity's defaults: 19 MiB, 2 passes, 1 lane.
pub(crate) const ARGON2_MEMORY_KIB: u32 = 19_456;
pub(crate) const ARGON2_ITERATIONS: u32 = 2;

/// A service token's claims as identity issues them for `client_credentials`.
fn service_claims() -> AccessClaims {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    AccessClaims {
        iss: "https://api.example.com".to_owned(),
        sub: "billing".to_owned(),
        aud: Audience::single("tessera"),
        exp: now + 900,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::now_v7().to_string(),
        roles: vec!["service".to_owned()],
        client_id: Some("billing".to_owned()),
    }
}

/// A fresh active key of `alg`, loaded the way identity loads its active key.
pub(crate) fn signing_key(alg: Algorithm) -> anyhow::Result<SigningKey> {
    let generated = tessera_keys::generate(alg).context("generate key")?;
    let now = OffsetDateTime::now_utc();
    let key = generated.into_key(KeyState::Active, now);
    SigningKey::from_key(&key).context("load key")
}

/// Single-thread `SigningKey::sign` of realistic service-token claims (header, JSON,
/// base64url and the signature: everything identity does per token except the jti).
pub(crate) fn signing(key: &SigningKey, warmup: Duration, window: Duration) -> Stats {
    let claims = service_claims();
    let measure_from = Instant::now() + warmup;
    let end = measure_from + window;
    let mut samples = Vec::with_capacity(1 << 20);
    let mut errors = 0;
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let signed = key.sign(black_box(&claims));
        let finished = Instant::now();
        if started < measure_from || finished > end {
            continue;
        }
        match signed {
            Ok(token) => {
                black_box(token);
                samples.push(finished - started);
            }
            Err(_) => errors += 1,
        }
    }
    Stats::from_samples(samples, errors, window)
}

/// Argon2id verifications of a correct password with identity's default parameters,
/// one thread per core, nothing else running: what logins can reach at best.
pub(crate) fn argon2_verify(
    threads: usize,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Stats> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, 1, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon2 = Argon2::new(argon2::Algorithm::Argon2id, Version::V0x13, params);
    let password = b"a perfectly fine bench passphrase";
    let hash = argon2
        .hash_password(password)
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?
        .to_string();
    let measure_from = Instant::now() + warmup;
    let end = measure_from + window;
    let per_thread: Vec<(Vec<Duration>, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (argon2, hash) = (&argon2, hash.as_str());
                scope.spawn(move || {
                    let mut samples = Vec::new();
                    let mut errors = 0;
                    loop {
                        let started = Instant::now();
                        if started >= end {
                            break;
                        }
                        let ok = argon2.verify_password(password, black_box(hash)).is_ok();
                        let finished = Instant::now();
                        if started < measure_from || finished > end {
                            continue;
                        }
                        if ok {
                            samples.push(finished - started);
                        } else {
                            errors += 1;
                        }
                    }
                    (samples, errors)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    let errors = per_thread.iter().map(|(_, e)| e).sum();
    let samples = per_thread.into_iter().flat_map(|(s, _)| s).collect();
    Ok(Stats::from_samples(samples, errors, window))
}
