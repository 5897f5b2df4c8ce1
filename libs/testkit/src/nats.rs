//! A `nats-server` (JetStream) of a test's own: its own port and store, stopped and
//! started at will (an outage), killed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Environment variable naming the `nats-server` binary (else `$GOBIN`, `$GOPATH/bin`,
/// `~/go/bin`, where `tools/services up` installs it, else `PATH`).
pub const NATS_SERVER_ENV: &str = "TESSERA_NATS_SERVER";

/// A private `nats-server` with JetStream and a file store that survives a stop.
#[derive(Debug)]
pub struct PrivateNats {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV) {
        return path.into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    [
        std::env::var_os("GOBIN").map(PathBuf::from),
        std::env::var_os("GOPATH").map(|p| PathBuf::from(p).join("bin")),
        home.map(|h| h.join("go/bin")),
    ]
    .into_iter()
    .flatten()
    .map(|dir| dir.join("nats-server"))
    .find(|path| path.is_file())
    .unwrap_or_else(|| "nats-server".into())
}

impl PrivateNats {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    ///
    /// # Panics
    /// When `nats-server` cannot be started or does not listen within 30 s.
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut nats = Self {
            port,
            store: tempfile::Builder::new()
                .prefix("tessera-nats-")
                .tempdir()
                .expect("a store dir"),
            child: None,
        };
        nats.resume().await;
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether the server process is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server again on the same port and store (after [`PrivateNats::stop`]).
    ///
    /// # Panics
    /// When it cannot be started or does not listen within 30 s.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): run `tools/services up`, or set {NATS_SERVER_ENV}",
                    binary.display()
                )
            });
        self.child = Some(child);
        let port = self.port;
        // Well under a second normally; JetStream recovering its store on a loaded
        // machine gets room.
        crate::eventually(
            Duration::from_secs(30),
            "nats-server to listen",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(drop)
            },
        )
        .await;
    }

    /// Kills the server (SIGKILL, like a lost node); the store stays for
    /// [`PrivateNats::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}
