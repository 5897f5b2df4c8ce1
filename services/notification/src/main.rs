//! `tessera-notification`: parses the configuration, starts logging, runs the service, maps
//! the outcome to an exit code.

use std::process::ExitCode;

use tessera_notification::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = service_kit::parse_or_exit();
    let shipper = match service_kit::telemetry::init_with_shipping_token(
        &config.telemetry,
        &config.log_shipping,
        "notification",
        tessera_notification::log_token_source(&config),
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
            eprintln!("tessera-notification: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = service_kit::shutdown::on_signals();
    match tessera_notification::run_shipping_logs(config, listeners, shutdown, shipper).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            error @ (tessera_notification::StartError::Config(_)
            | tessera_notification::StartError::Templates(_)),
        ) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("tessera-notification: {error}");
            ExitCode::FAILURE
        }
    }
}
