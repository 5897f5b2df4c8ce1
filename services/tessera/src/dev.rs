//! `tessera dev`: starts every built service on loopback with embedded defaults (SQLite
//! files and generated secrets under the data directory) and reports what runs where.

mod args;
mod gateway;
mod secrets;
mod services;

use std::net::SocketAddr;

use anyhow::Context as _;
use service_kit::log_shipping::Shipper;
use service_kit::{CancellationToken, HttpSettings, Listeners, Readiness, Service};
use tessera_events::{Bus, InProcessBus};
use tokio::task::JoinSet;

pub use args::DevArgs;
use gateway::{Upstreams, start_gateway};
use services::{start_identity, start_logging, start_notification, start_profile};

/// Services not built yet, with the issue that builds each; printed so nobody wonders.
pub const NOT_BUILT: &[(&str, u32)] = &[];

/// Installs the process's log subscriber (see [`crate::telemetry`]), shipping to the
/// in-process logging on `logging`; logging runs with auth disabled here, so no token.
pub fn init_telemetry(args: &DevArgs, logging: &Listeners) -> anyhow::Result<Option<Shipper>> {
    let endpoint = format!("http://{}/v1/logs", logging.public_addr()?);
    crate::telemetry::init(&args.telemetry(), endpoint)
}

/// A service started in this process.
#[derive(Debug)]
struct Running {
    name: &'static str,
    public: SocketAddr,
    admin: SocketAddr,
}

/// Runs until `shutdown` fires, logging on `logging_listeners` (from
/// [`DevArgs::bind_logging`]); the `shipper`'s counters go to the tessera admin metrics.
pub async fn run(
    args: DevArgs,
    logging_listeners: Listeners,
    shipper: Option<Shipper>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
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

    let tessera = Service::new("tessera", HttpSettings::default());
    if let Some(shipper) = &shipper {
        shipper.register_metrics(tessera.metrics());
    }
    let mut tasks = JoinSet::new();
    let gateway_listeners = Listeners::bind_addrs(args.listen, args.gateway_admin_listen)
        .await
        .context("gateway (--listen / --gateway-admin-listen)")?;
    let issuer = format!("http://{}", gateway_listeners.public_addr()?);
    let (identity, identity_pool) = start_identity(&args, &issuer, &shutdown).await?;
    let identity_readiness = identity.readiness.clone();
    let identity = launch(&tessera, &mut tasks, identity);
    // One in-process bus for every service: each relays its own outbox into it.
    let bus = InProcessBus::new();
    let profile = start_profile(&args, &issuer, identity.public, &bus, &shutdown).await?;
    let profile = launch(&tessera, &mut tasks, profile);
    let notification = start_notification(
        &args,
        &issuer,
        identity.public,
        profile.public,
        &bus,
        &shutdown,
    )
    .await?;
    let notification = launch(&tessera, &mut tasks, notification);
    let logging = start_logging(&args, logging_listeners, &bus, &shutdown)?;
    let logging_readiness = logging.readiness.clone();
    let logging = launch(&tessera, &mut tasks, logging);
    // Every consumer has subscribed: deliver what the outboxes hold.
    bus.start();
    relay_identity(
        identity_pool,
        [identity_readiness, logging_readiness],
        &bus,
        &shutdown,
    );
    let upstreams = Upstreams {
        identity: identity.public,
        profile: profile.public,
        notification: notification.public,
        logging: logging.public,
    };
    let gateway = start_gateway(&args, &issuer, &upstreams, gateway_listeners, &shutdown).await?;
    let gateway = launch(&tessera, &mut tasks, gateway);

    print_summary(
        &args,
        admin_addr,
        &[gateway, identity, profile, notification, logging],
    );
    let stop = shutdown.clone();
    let router = tessera.admin_router();
    tasks.spawn(async move {
        if let Err(error) = axum::serve(admin, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        {
            tracing::error!(%error, "admin listener failed");
        }
    });
    while tasks.join_next().await.is_some() {}
    tracing::info!("tessera stopped");
    Ok(())
}

/// A service built and bound, not serving yet.
struct Started {
    running: Running,
    readiness: Readiness,
    serve: Serve,
}

impl Started {
    /// `service`, named `name`, about to serve on `listeners` until `shutdown`.
    fn new(
        name: &'static str,
        service: Service,
        listeners: Listeners,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let running = Running {
            name,
            public: listeners.public_addr()?,
            admin: listeners.admin_addr()?,
        };
        let readiness = service.readiness().clone();
        let serve = Box::pin(service.serve(listeners, shutdown.clone()));
        Ok(Self {
            running,
            readiness,
            serve,
        })
    }
}

impl Started {
    /// Runs `after` once the server has stopped, before the service counts as stopped
    /// (work that must finish before the process exits).
    fn then(mut self, after: impl Future<Output = ()> + Send + 'static) -> Self {
        let serve = self.serve;
        self.serve = Box::pin(async move {
            serve.await;
            after.await;
        });
        self
    }
}

/// Serves `started` among `tasks`, counting it in the all-in-one's readiness.
fn launch(tessera: &Service, tasks: &mut JoinSet<()>, started: Started) -> Running {
    add_readiness(tessera.readiness(), started.running.name, started.readiness);
    tasks.spawn(started.serve);
    started.running
}

/// The all-in-one is ready when every service in it is.
fn add_readiness(all: &Readiness, name: &'static str, service: Readiness) {
    all.add(name, move || {
        let service = service.clone();
        async move {
            let report = service.report().await;
            if report.ready {
                Ok(())
            } else {
                let failing: Vec<String> = report
                    .checks
                    .into_iter()
                    .filter(|(_, c)| !c.ok)
                    .map(|(n, _)| n)
                    .collect();
                Err(format!("not ready: {}", failing.join(", ")))
            }
        }
    });
}

type Serve = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Identity relays its outbox (audit records, `user.registered`) only to NATS; here its
/// rows go to the in-process bus, so logging's audit chain gets signups and logins. The
/// relay starts once identity (its migrations have run) and logging (its audit consumer
/// has a migrated database) are both ready: before that every delivery would fail against
/// logging's missing tables and be retried with a warning each time.
fn relay_identity(
    pool: service_kit::Pool,
    ready_first: [Readiness; 2],
    bus: &InProcessBus,
    shutdown: &CancellationToken,
) {
    let relay = tessera_events::Relay::new(pool, Bus::InProcess(bus.clone()).sink());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        for readiness in &ready_first {
            while !readiness.report().await.ready {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            }
        }
        relay.spawn(stop);
    });
}

#[allow(clippy::print_stdout, reason = "the summary is the command's output")]
fn print_summary(args: &DevArgs, admin: SocketAddr, running: &[Running]) {
    println!("Tessera dev — data in {}", args.data_dir.display());
    println!("  {:<14} {:<28} admin", "component", "public");
    println!("  {:<14} {:<28} http://{admin}", "tessera", "-");
    for service in running {
        println!(
            "  {:<14} {:<28} http://{}",
            service.name,
            format!("http://{}", service.public),
            service.admin
        );
    }
    for (name, issue) in NOT_BUILT {
        println!("  {name:<14} not built yet (issue #{issue})");
    }
    if let Some(identity) = running.iter().find(|r| r.name == "identity") {
        println!(
            "Try: curl -s http://{}/.well-known/openid-configuration",
            identity.public
        );
    }
    println!("Press Ctrl-C to stop.");
}
