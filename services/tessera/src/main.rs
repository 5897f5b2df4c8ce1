//! `tessera`: parses the command line, starts logging, runs the chosen command.

use std::process::ExitCode;

use tessera::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = service_kit::parse_or_exit();
    let result = match cli.command {
        Command::Dev(args) => {
            if let Err(error) = service_kit::telemetry::init(&args.telemetry()) {
                eprintln!("configuration error: {error}");
                return ExitCode::from(2);
            }
            tessera::dev::run(args, service_kit::shutdown::on_signals()).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tessera: {error:#}");
            ExitCode::FAILURE
        }
    }
}
