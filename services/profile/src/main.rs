//! `tessera-profile`: parses the configuration, starts logging, runs the service, maps
//! the outcome to an exit code.

use std::process::ExitCode;

use tessera_profile::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = service_kit::parse_or_exit();
    let token = match tessera_profile::log_token_source(&config) {
        Ok(token) => token,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let shipper = match service_kit::telemetry::init_with_shipping_token(
        &config.telemetry,
        &config.log_shipping,
        "profile",
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
            eprintln!("tessera-profile: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = service_kit::shutdown::on_signals();
    match tessera_profile::run_shipping_logs(config, listeners, shutdown, shipper).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tessera-profile: {error}");
            ExitCode::FAILURE
        }
    }
}
