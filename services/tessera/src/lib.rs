//! The all-in-one binary: every Tessera service that exists, in one process, each on its
//! own loopback port, with SQLite files under one data directory (DESIGN.md §1).
//!
//! Services plug in as they are built: today the gateway, identity, profile and
//! notification run (events on an in-process bus, mail written to files);
//! [`dev::NOT_BUILT`] lists the others.

pub mod dev;
pub mod telemetry;

/// `tessera` command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: the whole platform in one process"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `tessera` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run every built service on loopback with embedded defaults, until Ctrl-C.
    Dev(dev::DevArgs),
}
