//! The all-in-one gateway: its routes file, written at every start, forwarding to the
//! other services' loopback ports.

use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use service_kit::{CancellationToken, Listeners};

use super::Started;
use super::args::DevArgs;
use super::services::parse_config;

/// Where the gateway forwards to.
pub(super) struct Upstreams {
    pub(super) identity: SocketAddr,
    pub(super) profile: SocketAddr,
    pub(super) notification: SocketAddr,
    pub(super) logging: SocketAddr,
}

/// The gateway on `listeners` (bound first: its address is the issuer), routing to
/// `upstreams` and verifying tokens with identity's keys.
pub(super) async fn start_gateway(
    args: &DevArgs,
    issuer: &str,
    upstreams: &Upstreams,
    listeners: Listeners,
    shutdown: &CancellationToken,
) -> anyhow::Result<Started> {
    let routes = args.data_dir.join("gateway-routes.yaml");
    let identity = upstreams.identity;
    std::fs::write(&routes, dev_routes(upstreams))
        .with_context(|| format!("cannot write {}", routes.display()))?;
    let gateway_args = [
        "tessera-gateway".to_owned(),
        "--routes-file".to_owned(),
        routes.display().to_string(),
        "--jwks-url".to_owned(),
        format!("http://{identity}/.well-known/jwks.json"),
        "--issuer".to_owned(),
        issuer.to_owned(),
    ];
    let config: tessera_gateway::config::Config = parse_config("gateway", gateway_args)?;
    let built = tessera_gateway::build(
        &config,
        std::sync::Arc::new(service_kit::SystemClock),
        shutdown,
    )
    .await
    .context("the gateway cannot start")?;
    Started::new("gateway", built.service, listeners, shutdown)
}

/// Routes of the all-in-one gateway: identity's API and discovery, profiles and
/// notifications (each service authenticates its own endpoints; the gateway adds a login
/// rate limit), and `/logging/` for admins only, as the operator writes it: logging runs
/// with auth disabled here, so the gateway's role check is its only guard.
fn dev_routes(upstreams: &Upstreams) -> String {
    let login_limit = "    rate_limit: { name: login, requests: 10, period_secs: 60, burst: 10 }\n";
    let mut yaml = String::from(
        "# Written by `tessera dev` at every start; edits are replaced.\nversion: 1\nroutes:\n",
    );
    let (identity, profile, notification) = (
        upstreams.identity,
        upstreams.profile,
        upstreams.notification,
    );
    for (name, prefix, upstream, limit) in [
        ("discovery", "/.well-known/", identity, ""),
        ("oauth", "/oauth2/", identity, ""),
        ("signup", "/v1/signup", identity, ""),
        ("login", "/v1/login", identity, login_limit),
        ("logout", "/v1/logout", identity, ""),
        ("me", "/v1/me", identity, ""),
        ("identity-admin", "/v1/admin/", identity, ""),
        ("profiles", "/v1/profiles", profile, ""),
        ("notifications", "/v1/notifications", notification, ""),
    ] {
        // Writing into a String cannot fail.
        let _ = write!(
            yaml,
            "  - name: {name}\n    match: {{ prefix: {prefix} }}\n    upstreams: [http://{upstream}]\n    auth: public\n{limit}"
        );
    }
    let _ = write!(
        yaml,
        "  - name: logging\n    match: {{ prefix: /logging/ }}\n    rewrite_prefix: /\n    upstreams: [http://{}]\n    auth: {{ roles: [admin] }}\n",
        upstreams.logging
    );
    yaml
}
