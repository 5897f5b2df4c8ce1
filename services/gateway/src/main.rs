//! `tessera-gateway`: parses the configuration, starts logging, runs the gateway.

use std::process::ExitCode;

use tessera_gateway::config::Config;

/// mimalloc instead of the system allocator: a proxied request makes over a hundred small
/// allocations, and glibc's malloc took about a quarter of the gateway's user time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = service_kit::parse_or_exit();
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
    let listeners = match service_kit::Listeners::bind(&config.http).await {
        Ok(listeners) => listeners,
        Err(error) => {
            eprintln!("tessera-gateway: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = service_kit::shutdown::on_signals();
    match tessera_gateway::run_shipping_logs(config, listeners, shutdown, shipper).await {
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
