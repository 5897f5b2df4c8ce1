//! CPU time spent on a backlog, read from `/proc`: this process (profile, notification,
//! identity and the load generator; its SQLite worker threads apart), the SMTP server
//! (found by its mail directory on its command line) and nats-server. The delivery rate
//! is CPU-bound on the shared cores, so CPU per mail says what a change saved where a
//! rate beside other helpers' load cannot.

use std::path::Path;

/// Clock ticks per second of `/proc`'s `utime` and `stime` (`getconf CLK_TCK`, 100 on
/// Linux for x86 and arm64).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU used so far, in milliseconds.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Cpu {
    /// This process, every thread.
    process: f64,
    /// Of which sqlx's SQLite worker threads (`sqlx-sqlite-worker-N`).
    sqlite: f64,
    /// The SMTP server's process.
    smtp: f64,
    /// nats-server (shared with anything else using it).
    nats: f64,
}

/// `utime + stime` of a `/proc/.../stat` line, in milliseconds, and the `comm` field.
fn stat(path: &Path) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (head, tail) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    // After `comm`: state is field 3, utime 14 and stime 15 (1-based, whole line).
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((comm, ticks * 1000.0 / TICKS_PER_SEC))
}

impl Cpu {
    /// Reads the counters now; the SMTP server is the process whose command line holds
    /// `smtp_dir`.
    pub(crate) fn now(smtp_dir: &Path) -> Self {
        let mut cpu = Self::default();
        if let Some((_, ms)) = stat(Path::new("/proc/self/stat")) {
            cpu.process = ms;
        }
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                if let Some((comm, ms)) = stat(&task.path().join("stat"))
                    && comm.starts_with("sqlx-sqlite")
                {
                    cpu.sqlite += ms;
                }
            }
        }
        let needle = smtp_dir.as_os_str().as_encoded_bytes();
        let Ok(processes) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for process in processes.flatten() {
            let path = process.path();
            let Some((comm, ms)) = stat(&path.join("stat")) else {
                continue;
            };
            if comm == "nats-server" {
                cpu.nats += ms;
            } else if std::fs::read(path.join("cmdline"))
                .is_ok_and(|line| line.windows(needle.len()).any(|w| w == needle))
            {
                cpu.smtp += ms;
            }
        }
        cpu
    }

    /// The note on a backlog of `mails`: these counters (read after its last mail)
    /// since `start` (its first POST) and since `created` (its last POST, when `sent`
    /// of its mails had arrived already). Also printed.
    pub(crate) fn note(&self, start: &Self, created: &Self, mails: usize, sent: usize) -> String {
        let after = mails.saturating_sub(sent);
        let note = format!(
            "backlog CPU per mail, from the first POST to the last mail: {}; after the last \
             POST ({after} mails, delivery only): {}",
            self.per_mail_since(start, mails),
            self.per_mail_since(created, after)
        );
        eprintln!("  {note}");
        note
    }

    /// What was used since `earlier`, per mail of `mails`, as text.
    fn per_mail_since(&self, earlier: &Self, mails: usize) -> String {
        let mails = f64::from(u32::try_from(mails).unwrap_or(u32::MAX).max(1));
        let per = |now: f64, then: f64| (now - then) / mails;
        let process = per(self.process, earlier.process);
        let sqlite = per(self.sqlite, earlier.sqlite);
        let smtp = per(self.smtp, earlier.smtp);
        let nats = per(self.nats, earlier.nats);
        format!(
            "{:.2} ms (this process {process:.2}, of it SQLite threads {sqlite:.2}; SMTP \
             server {smtp:.2}; nats-server {nats:.2})",
            process + smtp + nats
        )
    }
}
