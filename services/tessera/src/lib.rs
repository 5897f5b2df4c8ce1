//! The all-in-one binary: every Tessera service that exists, in one process, each on its
//! own loopback port, with SQLite files under one data directory (DESIGN.md §1).
//!
//! The gateway, identity, profile, notification and logging run (events on an
//! in-process bus, mail written to files, every log record shipped to the in-process
//! logging); [`dev::NOT_BUILT`] lists services still to come (none today).

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
