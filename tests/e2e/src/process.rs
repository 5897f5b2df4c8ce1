//! One service process: started with exactly the environment given (nothing inherited
//! but `PATH`), its stdout and stderr appended to files, killed on drop.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// How much of each log the harness prints when a test fails.
const TAIL_BYTES: u64 = 6 * 1024;

/// A running (or stopped) service process that can be started again with the same
/// settings.
pub struct Process {
    name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    stdout: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Starts `binary` with `env` only; logs go to `<log_dir>/<name>.{stdout,stderr}`.
    pub fn start(name: &str, binary: PathBuf, env: Vec<(String, String)>, log_dir: &Path) -> Self {
        let mut process = Self {
            name: name.to_owned(),
            binary,
            env,
            stdout: log_dir.join(format!("{name}.stdout")),
            stderr: log_dir.join(format!("{name}.stderr")),
            child: None,
        };
        process.restart();
        process
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the process again (after [`Process::stop`]) with the same settings and
    /// ports; its logs are appended to the same files.
    ///
    /// # Panics
    /// When the binary cannot be executed.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let open = |path: &Path| -> File {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
        };
        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(open(&self.stdout))
            .stderr(open(&self.stderr));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL: a crash or a lost node, the worst case) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has exited by itself, with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// The last few kilobytes of its stdout and stderr.
    pub fn tails(&self) -> String {
        format!(
            "----- {} stdout ({}) -----\n{}\n----- {} stderr ({}) -----\n{}",
            self.name,
            self.stdout.display(),
            tail(&self.stdout),
            self.name,
            self.stderr.display(),
            tail(&self.stderr)
        )
    }
}

impl std::fmt::Debug for Process {
    // Names only: the env holds client secrets and the pepper.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("binary", &self.binary)
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("running", &self.child.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("(no file)");
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
