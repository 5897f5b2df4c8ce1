//! `tessera-gateway`: parses the configuration, starts logging, runs the gateway
//! thread-per-core (`--threads` workers for the public listener; admin and background
//! tasks on the main thread's runtime).

use std::process::ExitCode;

use tessera_gateway::config::Config;

/// mimalloc instead of the system allocator: a proxied request makes over a hundred small
/// allocations, and glibc's malloc took about a quarter of the gateway's user time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config: Config = service_kit::parse_or_exit();
    // The main thread's runtime: admin listener, route reload, JWKS refresh, limiter
    // sweeping, log shipping. The public listener's workers build their own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tessera-gateway: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let token = match tessera_gateway::log_token_source(&config) {
        Ok(token) => token,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let shipper = match service_kit::telemetry::init_with_shipping_token(
        &config.telemetry,
        &config.log_shipping,
        "gateway",
        token,
    ) {
        Ok(shipper) => shipper,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let shutdown = service_kit::shutdown::on_signals();
    match tessera_gateway::run_per_core(config, shutdown, shipper).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ tessera_gateway::StartError::Config(_)) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("tessera-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}
