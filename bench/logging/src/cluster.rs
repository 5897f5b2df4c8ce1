//! A throwaway PostgreSQL cluster of the benchmark's own (`initdb` into a temporary
//! directory, a free loopback port, no TLS), started with named settings so the
//! packaged defaults and the recommended settings are measured side by side on the
//! same machine, and deleted afterwards (`pg_ctl stop -m immediate`, then the
//! directory).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The settings of one cluster: `postgresql.conf` lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) lines: &'static [&'static str],
}

/// `initdb`'s own settings (what the Debian package ships: `shared_buffers` 128 MB,
/// `max_wal_size` 1 GB, checkpoints every 5 minutes, no WAL compression).
pub(crate) const PACKAGED: Settings = Settings { lines: &[] };

/// The settings services/logging/README.md recommends for a log store on a machine of
/// this size (23 GiB RAM): durable commits (`synchronous_commit`, `fsync` and
/// `full_page_writes` stay on), fewer checkpoints and smaller full-page images.
pub(crate) const TUNED: Settings = Settings {
    lines: &[
        "shared_buffers = 2GB",
        "max_wal_size = 16GB",
        "min_wal_size = 2GB",
        "checkpoint_timeout = 15min",
        "checkpoint_completion_target = 0.9",
        "wal_compression = lz4",
        "wal_buffers = 64MB",
    ],
};

/// Named settings for `--postgres-clusters`.
pub(crate) fn settings(name: &str) -> anyhow::Result<Settings> {
    match name {
        "packaged" => Ok(PACKAGED),
        "tuned" => Ok(TUNED),
        other => bail!("unknown cluster settings {other:?} (packaged, tuned)"),
    }
}

/// A running throwaway cluster; stopped and deleted on drop.
#[derive(Debug)]
pub(crate) struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    /// Keeps the directory until the cluster is stopped.
    _dir: tempfile::TempDir,
    /// `postgres://…/postgres` of the cluster's superuser.
    pub(crate) url: String,
}

/// `program args…`, as the `postgres` user when this process is root (PostgreSQL
/// refuses to run as root).
fn command(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn is_root() -> bool {
    // `id -u` keeps the bench free of an extra crate for one system call.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

impl Cluster {
    /// Creates and starts a cluster with `settings` from the newest PostgreSQL under
    /// /usr/lib/postgresql (or `TESSERA_BENCH_PG_BIN`).
    pub(crate) fn start(settings: Settings) -> anyhow::Result<Self> {
        let bin = if let Some(bin) = std::env::var_os("TESSERA_BENCH_PG_BIN") {
            PathBuf::from(bin)
        } else {
            let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
                .context("no /usr/lib/postgresql (set TESSERA_BENCH_PG_BIN)")?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            versions.sort_unstable();
            let version = versions.last().context("no PostgreSQL version installed")?;
            PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
        };
        let dir = tempfile::Builder::new()
            .prefix("tessera-bench-pg-")
            .tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        if is_root() {
            // The cluster runs as `postgres`: it must reach and own its directory.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(dir.path());
                    c
                },
                "chown",
            )?;
        }
        let data_str = data.to_str().context("temporary path is not UTF-8")?;
        run(
            command(
                &bin.join("initdb"),
                &[
                    "-D",
                    data_str,
                    "-U",
                    "tessera",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
            ),
            "initdb",
        )?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut conf = format!(
            "\n# tessera-bench-logging\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{}'\nmax_connections = 50\n",
            dir.path().display()
        );
        for line in settings.lines {
            conf.push_str(line);
            conf.push('\n');
        }
        // Appended: later lines win over initdb's.
        let conf_path = data.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path)?;
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing)?;
        let log = dir.path().join("server.log");
        run(
            command(
                &bin.join("pg_ctl"),
                &[
                    "-D",
                    data_str,
                    "-l",
                    log.to_str().context("temporary path is not UTF-8")?,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ),
            "pg_ctl start",
        )?;
        Ok(Self {
            bin,
            data,
            _dir: dir,
            url: format!("postgres://tessera@127.0.0.1:{port}/postgres?sslmode=disable"),
        })
    }
}

/// CPU seconds (user + system) of process `pid` from `/proc/<pid>/stat`, with its
/// reaped children's when `children` is set.
fn process_cpu(pid: &str, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // Numbering from `state` (field 3 in proc(5)): utime 14, stime 15, cutime 16,
    // cstime 17, ppid 4.
    let own = field(11)? + field(12)?;
    Some(if children {
        own + field(13)? + field(14)?
    } else {
        own
    })
}

fn parent_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(") ")?
            .1
            .split_whitespace()
            .nth(1)?
            .to_owned(),
    )
}

/// Clock ticks per second of `/proc` times.
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `ticks` of `/proc` times in seconds.
fn seconds(ticks: u64) -> f64 {
    u32::try_from(ticks).map_or(f64::NAN, |t| f64::from(t) / ticks_per_second())
}

/// CPU seconds this process has used so far (the senders and the in-process service).
pub(crate) fn own_cpu_seconds() -> f64 {
    process_cpu("self", false).map_or(f64::NAN, seconds)
}

impl Cluster {
    /// CPU seconds the cluster has used so far: the postmaster with its exited
    /// backends (reaped children count in its `cutime`/`cstime`) plus the live ones.
    /// On a machine shared with other work this is steadier than a rate: it does not
    /// count the time spent waiting for a core.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let Some(postmaster) = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|p| p.lines().next().map(str::to_owned))
        else {
            return f64::NAN;
        };
        let mut ticks = process_cpu(&postmaster, true).unwrap_or(0);
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                if parent_of(pid).as_deref() == Some(postmaster.as_str()) {
                    ticks += process_cpu(pid, false).unwrap_or(0);
                }
            }
        }
        seconds(ticks)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(data) = self.data.to_str() {
            let _ = run(
                command(
                    &self.bin.join("pg_ctl"),
                    &["-D", data, "-m", "immediate", "-w", "stop"],
                ),
                "pg_ctl stop",
            );
        }
    }
}
