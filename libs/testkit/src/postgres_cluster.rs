//! A PostgreSQL cluster of a test's own (`initdb` + `pg_ctl` in a temp dir), so a test
//! can crash and restart the server without touching anyone else's databases.
//!
//! `initdb` refuses to run as root (CI runs as root): then every server command runs as
//! the `postgres` user through `runuser`, and the temp dir is handed to that user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// Environment variable naming the directory of `initdb` and `pg_ctl` (default: the
/// newest `/usr/lib/postgresql/<version>/bin`, the Debian layout).
pub const POSTGRES_BIN_ENV: &str = "TESSERA_POSTGRES_BIN";

/// The role the cluster is created with (trust authentication on loopback).
const ROLE: &str = "tessera";

/// A private PostgreSQL server on a free loopback port; stopped (immediately) on drop.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
    running: bool,
}

fn postgres_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(POSTGRES_BIN_ENV) {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    let Some((_, bin)) = versions.pop() else {
        panic!(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: run \
             `tools/services up` (installs them), or set {POSTGRES_BIN_ENV}"
        )
    };
    bin
}

fn is_root() -> bool {
    // `id -u` rather than libc: this crate has no unsafe code and no libc dependency.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PrivatePostgres {
    /// Creates a cluster in a temp dir, starts it and waits until it accepts logins.
    ///
    /// # Panics
    /// When the binaries are missing or the server does not start.
    pub async fn start() -> Self {
        let bin = postgres_bin_dir();
        let as_postgres_user = is_root();
        let dir = tempfile::Builder::new()
            .prefix("tessera-pg-")
            .tempdir()
            .expect("a temp dir");
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster dir to postgres");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut cluster = Self {
            dir,
            bin,
            port,
            as_postgres_user,
            running: false,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                ROLE,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        cluster.resume().await;
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` of the server's bin directory, run as the `postgres` user when this
    /// process is root (PostgreSQL refuses to run as root).
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let output = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed: {}{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `postgres://tessera@127.0.0.1:<port>/postgres` (trust authentication).
    pub fn admin_url(&self) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates an empty database with a unique name and returns its URL.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn fresh_database(&self) -> String {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&self.admin_url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the private PostgreSQL: {e}"));
        // The name is hex digits generated above, so formatting it in is safe.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = admin.close().await;
        crate::database_url_with_name(&self.admin_url(), &name)
    }

    /// Whether the server is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Stops the server the hard way (`pg_ctl stop -m immediate`: no shutdown
    /// checkpoint, connections cut, WAL recovery on the next start — a crash).
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data_dir();
            self.run(
                "pg_ctl",
                &["stop", "-D", path_str(&data), "-m", "immediate"],
            );
            self.running = false;
        }
    }

    /// Starts the server (again) on the same port and data and waits until it accepts
    /// logins.
    ///
    /// # Panics
    /// When it does not start within 60 s.
    pub async fn resume(&mut self) {
        assert!(!self.running, "PostgreSQL is already running");
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            path_str(self.dir.path())
        );
        self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
            ],
        );
        self.running = true;
        let url = self.admin_url();
        crate::eventually(
            Duration::from_secs(60),
            "the private PostgreSQL to accept logins",
            || {
                let url = url.clone();
                async move {
                    let connection = PgConnection::connect(&url).await.ok()?;
                    let _ = connection.close().await;
                    Some(())
                }
            },
        )
        .await;
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            // Best effort (a panic in drop would abort): the temp dir goes next.
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-D", path_str(&data), "-m", "immediate"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
    }
}
