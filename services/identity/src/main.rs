//! `tessera-identity`: parses the configuration, starts logging, runs the service or an
//! admin command, maps the outcome to an exit code.

use std::process::ExitCode;
use std::sync::Arc;

use tessera_identity::SelfIssuedToken;
use tessera_identity::config::{AdminCommand, Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = service_kit::parse_or_exit();
    let token = Arc::new(SelfIssuedToken::default());
    // Only the server ships its logs; an admin command prints and exits.
    let telemetry = if cli.command.is_none() {
        service_kit::telemetry::init_with_shipping_token(
            &cli.config.telemetry,
            &cli.config.log_shipping,
            "identity",
            Some(token.clone()),
        )
    } else {
        service_kit::telemetry::init(&cli.config.telemetry).map(|()| None)
    };
    let shipper = match telemetry {
        Ok(shipper) => shipper,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        None => {
            let listeners = match service_kit::Listeners::bind(&cli.config.http).await {
                Ok(listeners) => listeners,
                Err(error) => {
                    eprintln!("tessera-identity: {error}");
                    return ExitCode::FAILURE;
                }
            };
            tessera_identity::run_shipping_logs(
                cli.config,
                listeners,
                service_kit::shutdown::on_signals(),
                shipper.map(|shipper| (shipper, token)),
            )
            .await
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
