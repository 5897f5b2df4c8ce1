//! The four sections of the report: what each row is compared to, and the notes that
//! say where the cores went.

use std::time::Duration;

use tessera_keys::Algorithm;

use crate::cpu::Usage;
use crate::signing;
use tessera_bench_report::{Row, Stats, Table, latency, rate};

/// The goal (#3): 10× Ory Hydra's published 541 tokens/s on 2 vCPU.
pub(crate) const TOKEN_GOAL: f64 = 5_500.0;
/// The latency goal for `client_credentials`.
pub(crate) const TOKEN_P99_GOAL: Duration = Duration::from_millis(25);
/// Single-thread signing ops/s of jsonwebtoken 10 + aws-lc-rs on a 2-vCPU machine of this
/// kind (FIELD-NOTES "JWT"): (algorithm, low, high).
pub(crate) const NOTED_SIGN: [(Algorithm, f64, f64); 3] = [
    (Algorithm::EdDSA, 41_000.0, 49_000.0),
    (Algorithm::ES256, 27_000.0, 30_000.0),
    (Algorithm::RS256, 750.0, 750.0),
];

/// One HTTP window: its numbers and where the cores went meanwhile.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) stats: Stats,
    pub(crate) cpu: Usage,
}

/// What one identity instance measured.
#[derive(Debug)]
pub(crate) struct ServiceRun {
    pub(crate) backend: &'static str,
    pub(crate) tokens: Measured,
    /// `token_issued` audit records found in the database after the token window.
    pub(crate) token_audits: i64,
    pub(crate) logins: Measured,
    /// JWKS and the HTTP floor, measured once (they do not touch the database).
    pub(crate) jwks: Option<(Measured, Measured)>,
}

impl ServiceRun {
    /// Whether `client_credentials` met the throughput and latency goal.
    pub(crate) fn token_goal_met(&self) -> bool {
        self.tokens.stats.rate() >= TOKEN_GOAL && self.tokens.stats.p99 < TOKEN_P99_GOAL
    }
}

pub(crate) fn signing_table(rows: &[(Algorithm, Measured, f64, f64)]) -> Table {
    let mut table = Table::new("1. Raw signing in-process, one thread (the limit)", "ops/s");
    for (alg, measured, low, high) in rows {
        let noted = if low < high {
            format!("noted {}–{}/s", rate(*low), rate(*high))
        } else {
            format!("noted ~{}/s", rate(*low))
        };
        table.row(
            Row::new(
                format!("{alg} `SigningKey::sign`, service-token claims"),
                measured.stats,
                noted,
            )
            .ratio_to(f64::midpoint(*low, *high)),
        );
    }
    table.note(
        "noted: jsonwebtoken 10 + aws-lc-rs on a 2-vCPU machine of this kind (FIELD-NOTES \
         \"JWT\"); ratio to the middle of that range",
    );
    for (alg, measured, ..) in rows {
        table.note(format!("CPU during {alg}: {}", measured.cpu.describe()));
    }
    table
}

pub(crate) fn token_table(
    runs: &[ServiceRun],
    skipped: Option<&str>,
    eddsa: f64,
    cores: usize,
) -> Table {
    let mut table = Table::new(
        "2. client_credentials tokens over HTTP (audit record per token, group commit)",
        "req/s",
    );
    let goal = format!(
        "goal {}/s, p99 < {} ms",
        rate(TOKEN_GOAL),
        TOKEN_P99_GOAL.as_millis()
    );
    for run in runs {
        table.row(
            Row::new(
                format!("POST /oauth2/token, {}", run.backend),
                run.tokens.stats,
                goal.clone(),
            )
            .ratio_to(TOKEN_GOAL),
        );
    }
    if let Some(why) = skipped {
        table.row(Row::skipped("POST /oauth2/token, PostgreSQL", why));
    }
    #[expect(clippy::cast_precision_loss, reason = "a core count")]
    let signing_limit = eddsa * cores as f64;
    table.note(format!(
        "limit: EdDSA signing alone on {cores} cores would give {}/s; peer: Ory Hydra \
         541/s on 2 vCPU (published, BCrypt client secrets)",
        rate(signing_limit)
    ));
    for run in runs {
        table.note(format!(
            "{}: {} `token_issued` audit records in the database for {} tokens answered \
             (warm-up included); CPU in the window: {}",
            run.backend,
            run.token_audits,
            run.tokens.stats.answered,
            run.tokens.cpu.describe()
        ));
    }
    table
}

pub(crate) fn jwks_table(runs: &[ServiceRun]) -> Table {
    let mut table = Table::new("3. JWKS over HTTP", "req/s");
    if let Some((jwks, floor)) = runs.iter().find_map(|run| run.jwks.as_ref()) {
        table.row(
            Row::new(
                "GET /.well-known/jwks.json",
                jwks.stats,
                format!("floor {}/s", rate(floor.stats.rate())),
            )
            .ratio_to(floor.stats.rate()),
        );
        table.row(Row::new(
            "floor: GET /healthz (admin listener, no work)",
            floor.stats,
            "—",
        ));
        table.note(
            "the floor is what this HTTP stack and load generator reach with an empty \
             handler on the same cores: the ceiling of every HTTP row",
        );
        table.note(format!("CPU during JWKS: {}", jwks.cpu.describe()));
        table.note(format!("CPU during the floor: {}", floor.cpu.describe()));
    }
    table
}

pub(crate) fn login_table(
    runs: &[ServiceRun],
    skipped: Option<&str>,
    argon2: &Measured,
    cores: usize,
    concurrency: usize,
) -> Table {
    let mut table = Table::new(
        format!(
            "4. Logins over HTTP beside Argon2id alone ({} KiB, t={}, p=1)",
            signing::ARGON2_MEMORY_KIB,
            signing::ARGON2_ITERATIONS
        ),
        "ops/s",
    );
    let limit = format!("limit {}/s", rate(argon2.stats.rate()));
    for run in runs {
        table.row(
            Row::new(
                format!("POST /v1/login, {}", run.backend),
                run.logins.stats,
                limit.clone(),
            )
            .ratio_to(argon2.stats.rate()),
        );
    }
    if let Some(why) = skipped {
        table.row(Row::skipped("POST /v1/login, PostgreSQL", why));
    }
    table.row(Row::new(
        format!("Argon2id verify in-process, {cores} threads (the limit)"),
        argon2.stats,
        "peer: Keycloak ~15/s per vCPU",
    ));
    table.note(format!(
        "{concurrency} clients queue for {cores} hashing slots, so login latency is mostly \
         waiting: p50 ≈ clients ÷ rate"
    ));
    table.note(format!(
        "CPU during Argon2id alone: {}",
        argon2.cpu.describe()
    ));
    for run in runs {
        table.note(format!(
            "CPU during logins on {}: {}",
            run.backend,
            run.logins.cpu.describe()
        ));
    }
    table
}

/// The verdict line printed under the tables for one backend.
pub(crate) fn token_verdict(run: &ServiceRun) -> String {
    format!(
        "token goal on {}: {} ({} tokens/s, p99 {}; goal ≥ {} tokens/s, p99 < {} ms)",
        run.backend,
        if run.token_goal_met() {
            "met"
        } else {
            "NOT met"
        },
        rate(run.tokens.stats.rate()),
        latency(run.tokens.stats.p99),
        rate(TOKEN_GOAL),
        TOKEN_P99_GOAL.as_millis(),
    )
}
