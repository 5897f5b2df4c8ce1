//! `tessera-identity`: parses the configuration, starts logging, runs the service or an
//! admin command, maps the outcome to an exit code.

use std::process::ExitCode;

use tessera_identity::config::{AdminCommand, Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = service_kit::parse_or_exit();
    if let Err(error) = service_kit::telemetry::init(&cli.config.telemetry) {
        eprintln!("configuration error: {error}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        None => {
            let listeners = match service_kit::Listeners::bind(&cli.config.http).await {
                Ok(listeners) => listeners,
                Err(error) => {
                    eprintln!("tessera-identity: {error}");
                    return ExitCode::FAILURE;
                }
            };
            tessera_identity::run(cli.config, listeners, service_kit::shutdown::on_signals()).await
        }
        Some(Command::Admin(AdminCommand::Grant { email })) => {
            tessera_identity::grant_admin(&cli.config, &email)
                .await
                .map(|message| println!("{message}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ tessera_identity::StartError::Config(_)) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("tessera-identity: {error}");
            ExitCode::FAILURE
        }
    }
}
