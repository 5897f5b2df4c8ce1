//! `tessera`: parses the command line, starts logging, runs the chosen command.

use std::process::ExitCode;

use tessera::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = service_kit::parse_or_exit();
    let result = match cli.command {
        Command::Dev(args) => {
            // A bad filter is a configuration error (exit 2) before anything binds.
            if let Err(error) = tracing_subscriber::EnvFilter::try_new(&args.log_filter) {
                eprintln!(
                    "configuration error: invalid log filter (--log-filter / RUST_LOG) {:?}: {error}",
                    args.log_filter
                );
                return ExitCode::from(2);
            }
            match args.bind_logging().await {
                Ok(logging) => match tessera::dev::init_telemetry(&args, &logging) {
                    Ok(shipper) => {
                        let shutdown = service_kit::shutdown::on_signals();
                        tessera::dev::run(args, logging, shipper, shutdown).await
                    }
                    Err(error) => {
                        eprintln!("configuration error: {error}");
                        return ExitCode::from(2);
                    }
                },
                Err(error) => Err(error),
            }
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
