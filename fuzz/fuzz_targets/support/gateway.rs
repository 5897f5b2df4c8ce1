//! A whole gateway for the fuzz targets that drive one over TCP (`server`, `relay`): a
//! routes file with one public route `/` to `upstream`, built and served on the calling
//! runtime with one worker, until the process ends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use service_kit::{CancellationToken, SystemClock};
use tokio::net::{TcpListener, TcpStream};

/// A raw upstream on loopback that hands every connection it accepts to `answer`, on a
/// task of its own; returns its address.
pub(crate) async fn raw_upstream<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let upstream = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = upstream.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = upstream.accept().await else {
                continue;
            };
            tokio::spawn(answer(stream));
        }
    });
    addr
}

/// Serves a gateway in front of `upstream`; `route` is YAML added to the route (its
/// settings, one per line, indented as route keys), `args` the command-line flags added
/// to the fixed ones. `target` names the fixture's directory. Returns its address.
pub(crate) async fn serve(
    target: &str,
    upstream: SocketAddr,
    route: &[&str],
    args: &[&str],
) -> SocketAddr {
    let dir = std::env::temp_dir().join(format!("tessera-fuzz-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let routes = dir.join("routes.yaml");
    let mut yaml = format!(
        "version: 1\nroutes:\n  - name: all\n    match: {{ prefix: / }}\n    upstreams: [http://{upstream}]\n    auth: public\n"
    );
    for line in route {
        yaml.push_str("    ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    std::fs::write(&routes, yaml).expect("routes file");
    let routes = routes.display().to_string();
    let mut argv = vec![
        "tessera-gateway",
        "--routes-file",
        &routes,
        "--jwks-url",
        "http://127.0.0.1:9/jwks.json",
        "--issuer",
        "https://fuzz.example",
        "--log-filter",
        "off",
    ];
    argv.extend_from_slice(args);
    let config = tessera_gateway::config::Config::try_parse_from(argv).expect("config");
    let shutdown = CancellationToken::new();
    let built = tessera_gateway::build(&config, Arc::new(SystemClock), &shutdown)
        .await
        .expect("gateway builds");
    let public = tessera_gateway::serve::bind_public(SocketAddr::from(([127, 0, 0, 1], 0)), 1)
        .expect("bind public");
    let addr = public[0].local_addr().expect("addr");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    tokio::spawn(async move {
        let _keep = shutdown.clone();
        tessera_gateway::serve::serve_per_core(built, public, admin, shutdown)
            .await
            .expect("gateway serves");
    });
    addr
}
