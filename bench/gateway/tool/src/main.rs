//! `tessera-bench-gateway`: the pieces of the gateway benchmark a shell script cannot do
//! — a minimal upstream, test keys with long-lived tokens, and a JWKS server.
//! `bench/gateway/run` drives it; see `bench/README.md`.

mod keys;
mod server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The token issuer every benchmarked proxy is configured to accept.
const ISSUER: &str = "http://issuer.test";
/// The audience the gateway accepts by default (`--audiences tessera`).
const AUDIENCE: &str = "tessera";

#[derive(Debug, Parser)]
#[command(
    name = "tessera-bench-gateway",
    about = "Helpers for bench/gateway/run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve `200 ok` to every request (HTTP/1.1, keep-alive) on 127.0.0.1:PORT.
    Upstream {
        #[arg(long)]
        port: u16,
    },
    /// Generate an ES256 and an EdDSA key, their JWKS, the ES256 public key for `haproxy`,
    /// one token signed by each key, and for each key a file of COUNT tokens of distinct
    /// users (one per line), into DIR.
    Keys {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 5000)]
        tokens: usize,
    },
    /// Serve FILE as `application/json` to every request on 127.0.0.1:PORT.
    Jwks {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Upstream { port } => server::serve(port, "text/plain", b"ok".to_vec()).await,
        Command::Keys { dir, tokens } => keys::write(&dir, ISSUER, AUDIENCE, tokens),
        Command::Jwks { port, file } => {
            let body = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            server::serve(port, "application/json", body).await
        }
    }
}
