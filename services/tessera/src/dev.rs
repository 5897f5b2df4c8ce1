//! `tessera dev`: starts every built service on loopback and reports what runs where.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use service_kit::{CancellationToken, HttpSettings, Service, TelemetryArgs};

/// A service of the platform and whether this binary can run it yet.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// Service name.
    pub name: &'static str,
    /// The issue that builds it, while it is not built.
    pub pending_issue: Option<u32>,
}

/// Every service of DESIGN.md §1, in start order.
pub const COMPONENTS: &[Component] = &[
    Component {
        name: "identity",
        pending_issue: Some(3),
    },
    Component {
        name: "logging",
        pending_issue: Some(6),
    },
    Component {
        name: "profile",
        pending_issue: Some(5),
    },
    Component {
        name: "notification",
        pending_issue: Some(5),
    },
    Component {
        name: "gateway",
        pending_issue: Some(4),
    },
];

/// `tessera dev` settings. Everything has a default: `tessera dev` alone runs the platform.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Directory for SQLite files, mail and other state; created if missing.
    #[arg(
        long,
        env = "TESSERA_DATA_DIR",
        default_value = "./.tessera",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Admin listener of the all-in-one process (/healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "TESSERA_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Runs until `shutdown` fires.
pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-listen)", args.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    let service = Service::new("tessera", HttpSettings::default());

    print_summary(&args, admin_addr);
    let router = service.admin_router();
    let stop = shutdown.clone();
    axum::serve(admin, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("admin listener failed")?;
    tracing::info!("tessera stopped");
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the summary is the command's output")]
fn print_summary(args: &DevArgs, admin: SocketAddr) {
    println!("Tessera dev — data in {}", args.data_dir.display());
    println!("  {:<14} {:<28} admin", "component", "public");
    println!("  {:<14} {:<28} http://{admin}", "tessera", "-");
    for component in COMPONENTS {
        if let Some(issue) = component.pending_issue {
            println!("  {:<14} not built yet (issue #{issue})", component.name);
        }
    }
    println!("Press Ctrl-C to stop.");
}
