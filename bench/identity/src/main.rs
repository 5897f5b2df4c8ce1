//! `tessera-bench-identity`: identity's throughput beside its limits, in one run — raw
//! signing, `client_credentials` tokens over HTTP (SQLite and PostgreSQL), JWKS, and
//! logins beside Argon2id alone. Prints one Markdown table per section.

mod cpu;
mod identity;
mod load;
mod requests;
mod sections;
mod signing;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hyper::StatusCode;
use tessera_keys::Algorithm;

use crate::identity::{Backend, Running};
use crate::load::{MakeRequest, Shape};
use crate::sections::{Measured, NOTED_SIGN, ServiceRun};

/// Benchmark of the identity service beside its limits, measured side by side.
#[derive(Debug, Parser)]
#[command(name = "tessera-bench-identity", version)]
struct Args {
    /// Length of each measured window, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration_secs: u64,

    /// Warm-up before each measured window, in seconds (not counted).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    warmup_secs: u64,

    /// Concurrent HTTP clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,

    /// PostgreSQL server on which a fresh database is created (and dropped afterwards).
    /// Without it the PostgreSQL rows say they were skipped.
    #[arg(
        long,
        env = "TESSERA_TEST_POSTGRES_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    postgres_url: Option<String>,

    /// Worker threads of identity's runtime (0 = one per core, as the binary runs).
    #[arg(long, default_value_t = 0)]
    identity_threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Named threads, so the CPU accounting can tell the load generator from identity.
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("load-generator")
        .enable_all()
        .build()
        .context("load generator runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Identity's own logs: warnings and errors only, so they cannot flood the tables.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let identity_threads = if args.identity_threads == 0 {
        cores
    } else {
        args.identity_threads
    };
    let concurrency = usize::try_from(args.concurrency).context("concurrency")?;
    let shape = Shape {
        concurrency,
        warmup: Duration::from_secs(args.warmup_secs),
        window: Duration::from_secs(args.duration_secs),
    };

    let mut signing_rows = Vec::new();
    for (alg, low, high) in NOTED_SIGN {
        eprintln!("measuring {alg} signing, one thread …");
        let key = signing::signing_key(alg)?;
        let measured = in_process(shape, move || {
            Ok(signing::signing(&key, shape.warmup, shape.window))
        })
        .await?;
        signing_rows.push((alg, measured, low, high));
    }
    eprintln!("measuring Argon2id verification alone, {cores} threads …");
    let argon2 = in_process(shape, move || {
        signing::argon2_verify(cores, shape.warmup, shape.window)
    })
    .await?;

    let mut backends = vec![Backend::Sqlite];
    // An empty URL (e.g. an unset variable passed on by a recipe) means none was given.
    let postgres_url = args.postgres_url.filter(|url| !url.trim().is_empty());
    let postgres_skipped = match &postgres_url {
        Some(url) => {
            backends.push(Backend::Postgres(url.clone()));
            None
        }
        None => Some("skipped: no --postgres-url (or TESSERA_TEST_POSTGRES_URL) given".to_owned()),
    };
    if let Some(why) = &postgres_skipped {
        eprintln!("PostgreSQL rows {why}");
    }
    let mut runs = Vec::new();
    for backend in &backends {
        let measure_jwks = matches!(backend, Backend::Sqlite);
        runs.push(measure_service(backend, identity_threads, shape, measure_jwks).await?);
    }

    println!(
        "# identity benchmark\n\n{cores} cores; identity on its own runtime with \
         {identity_threads} workers, the load generator ({concurrency} keep-alive \
         HTTP/1.1 connections, closed loop) on another, both in this process on the same \
         cores. Warm-up {}s, window {}s per row.\n",
        args.warmup_secs, args.duration_secs
    );
    sections::signing_table(&signing_rows).print();
    let eddsa = signing_rows
        .iter()
        .find(|(alg, ..)| *alg == Algorithm::EdDSA)
        .map_or(0.0, |(_, m, ..)| m.stats.rate());
    let skipped = postgres_skipped.as_deref();
    sections::token_table(&runs, skipped, eddsa, cores).print();
    sections::jwks_table(&runs).print();
    sections::login_table(&runs, skipped, &argon2, cores, concurrency).print();
    for run in &runs {
        println!("{}", sections::token_verdict(run));
    }
    if let Some(why) = skipped {
        println!("token goal on PostgreSQL: {why}");
    }
    Ok(())
}

/// Starts identity on `backend` and measures tokens, (JWKS and the floor), then logins.
async fn measure_service(
    backend: &Backend,
    threads: usize,
    shape: Shape,
    measure_jwks: bool,
) -> anyhow::Result<ServiceRun> {
    let label = backend.label();
    eprintln!("starting identity on {label} …");
    let running = identity::start(backend, threads).await?;
    let result = measure_running(&running, label, shape, measure_jwks).await;
    running.stop().await?;
    result
}

/// An in-process measurement on a blocking thread, beside the CPU accounting of its
/// window (which shows whether anything else ran meanwhile).
async fn in_process(
    shape: Shape,
    work: impl FnOnce() -> anyhow::Result<tessera_bench_report::Stats> + Send + 'static,
) -> anyhow::Result<Measured> {
    // A thread of its own (threads it starts inherit the name), so the CPU accounting
    // tells the measured work from the runtime's threads.
    let thread = std::thread::Builder::new()
        .name("measured".to_owned())
        .spawn(work)
        .context("spawn measuring thread")?;
    // The accounting stops a little before the work does, while its threads still live.
    let accounted = shape.window.saturating_sub(Duration::from_millis(100));
    let (stats, cpu) = tokio::join!(
        tokio::task::spawn_blocking(move || thread.join()),
        cpu::during(shape.warmup, accounted)
    );
    let stats = stats
        .context("join measuring thread")?
        .map_err(|_| anyhow::anyhow!("measuring thread panicked"))??;
    Ok(Measured { stats, cpu })
}

/// One load window beside the CPU accounting of the same window.
async fn measure(addr: SocketAddr, shape: Shape, make: MakeRequest) -> anyhow::Result<Measured> {
    let (stats, cpu) = tokio::join!(
        load::run(addr, shape, StatusCode::OK, make),
        cpu::during(shape.warmup, shape.window)
    );
    Ok(Measured { stats: stats?, cpu })
}

async fn measure_running(
    running: &Running,
    label: &'static str,
    shape: Shape,
    measure_jwks: bool,
) -> anyhow::Result<ServiceRun> {
    let public = running.public;
    let tokens_request = requests::client_credentials(public);
    let answer = requests::check(
        public,
        &tokens_request,
        StatusCode::OK,
        "client_credentials",
    )
    .await?;
    requests::check_token(&answer)?;
    eprintln!("measuring client_credentials on {label} …");
    let tokens = measure(public, shape, tokens_request).await?;
    let token_audits = running.token_audit_records().await?;

    let jwks = if measure_jwks {
        let jwks_request = requests::get(public, "/.well-known/jwks.json");
        requests::check(public, &jwks_request, StatusCode::OK, "JWKS").await?;
        eprintln!("measuring JWKS …");
        let jwks = measure(public, shape, jwks_request).await?;
        eprintln!("measuring the HTTP floor (admin /healthz) …");
        let floor = measure(
            running.admin,
            shape,
            requests::get(running.admin, "/healthz"),
        )
        .await?;
        Some((jwks, floor))
    } else {
        None
    };

    eprintln!("signing up {} users on {label} …", shape.concurrency);
    requests::sign_up(public, shape.concurrency).await?;
    let login_request = requests::login(public, shape.concurrency);
    let answer = requests::check(public, &login_request, StatusCode::OK, "login").await?;
    requests::check_token(&answer)?;
    eprintln!("measuring logins on {label} …");
    let logins = measure(public, shape, login_request).await?;
    Ok(ServiceRun {
        backend: label,
        tokens,
        token_audits,
        logins,
        jwks,
    })
}
