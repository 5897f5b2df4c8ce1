//! The `tessera-operator` binary: `crd` prints the CRD; `run` (the default) runs the
//! controller with the in-cluster (or kubeconfig) client.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use service_kit::TelemetryArgs;
use tessera_operator::Config;

/// Reconciles `Platform` resources into running Tessera platforms.
#[derive(Debug, Parser)]
#[command(name = "tessera-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CRD YAML (as committed in `crds/platform.yaml`).
    Crd,
    /// Run the operator (the default).
    Run,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = service_kit::parse_or_exit();
    if matches!(cli.command, Some(Command::Crd)) {
        print!("{}", tessera_operator::crd_yaml());
        return ExitCode::SUCCESS;
    }
    if let Err(error) = service_kit::telemetry::init(&cli.telemetry) {
        eprintln!("{error}");
        return ExitCode::from(2);
    }
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "no Kubernetes configuration (in-cluster or kubeconfig)");
            return ExitCode::from(2);
        }
    };
    match tessera_operator::run(client, cli.config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "operator stopped");
            ExitCode::FAILURE
        }
    }
}
