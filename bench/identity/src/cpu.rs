//! Where the cores went during a measured window, from Linux `/proc` accounting: this
//! process's threads grouped by name (identity, its SQLite threads, the load generator),
//! the PostgreSQL server, other processes by name, what is left (kernel interrupt work),
//! and idle time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on every Linux build).
const TICKS_PER_SECOND: f64 = 100.0;
/// Other processes using less than this many cores are left out of the description.
const NOTABLE_CORES: f64 = 0.05;

/// CPU ticks so far of every task (thread of this process, or other process), keyed by
/// `(is_ours, id)` so a task that ends or starts mid-window cannot distort the others.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    tasks: BTreeMap<(bool, u32), (String, u64)>,
    /// This process's total, which keeps the ticks of threads that have ended.
    own_total: u64,
    machine_busy: u64,
    machine_idle: u64,
}

/// Cores used by each consumer during a window (1.0 = one core busy the whole window).
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    cores: Vec<(String, f64)>,
}

/// Which consumer a thread of this process belongs to, by its name (the kernel keeps
/// 15 bytes of it).
fn group_of_thread(name: &str) -> &'static str {
    if name.starts_with("identity") {
        "identity"
    } else if name.starts_with("sqlx-sqlite") {
        "identity's SQLite threads"
    } else if name.starts_with("load-generator") {
        "load generator"
    } else if name.starts_with("measured") {
        "measured work"
    } else {
        "bench (other threads)"
    }
}

/// `(comm, utime + stime)` of a `/proc/.../stat` line.
fn parse_stat(line: &str) -> Option<(String, u64)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = line.get(close + 2..)?.split(' ').collect();
    // After the name: state is field 3 of proc(5), so utime (14) and stime (15) sit at
    // indexes 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// `(id, comm, ticks)` of every numeric entry of a `/proc` directory.
fn read_tasks(dir: &str) -> Vec<(u32, String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let id: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (name, ticks) = parse_stat(&stat)?;
            Some((id, name, ticks))
        })
        .collect()
}

fn take() -> Snapshot {
    let mut snapshot = Snapshot::default();
    let own_pid = std::process::id();
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    snapshot.own_total = parse_stat(&own).map_or(0, |(_, ticks)| ticks);
    for (tid, name, ticks) in read_tasks("/proc/self/task") {
        let group = group_of_thread(&name).to_owned();
        snapshot.tasks.insert((true, tid), (group, ticks));
    }
    for (pid, name, ticks) in read_tasks("/proc") {
        if pid != own_pid {
            let group = if name == "postgres" {
                "PostgreSQL server".to_owned()
            } else {
                name
            };
            snapshot.tasks.insert((false, pid), (group, ticks));
        }
    }
    let total = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    if let Some(cpu) = total.lines().next().filter(|l| l.starts_with("cpu ")) {
        let ticks: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let sum = |range: std::ops::Range<usize>| ticks.get(range).map_or(0, |t| t.iter().sum());
        snapshot.machine_idle = sum(3..5);
        snapshot.machine_busy = sum(0..8) - snapshot.machine_idle;
    }
    snapshot
}

/// Measures CPU use from `start_after` for `window` (run beside a load window).
pub(crate) async fn during(start_after: Duration, window: Duration) -> Usage {
    tokio::time::sleep(start_after).await;
    let before = take();
    tokio::time::sleep(window).await;
    let after = take();
    let seconds = window.as_secs_f64() * TICKS_PER_SECOND;
    #[expect(clippy::cast_precision_loss, reason = "tick counts are small")]
    let cores = |ticks: u64| ticks as f64 / seconds;

    // Per task: what it used in the window (a task born in the window used all it has).
    let mut ours: BTreeMap<String, u64> = BTreeMap::new();
    let mut others: BTreeMap<String, u64> = BTreeMap::new();
    for (key, (group, ticks)) in &after.tasks {
        let used = ticks.saturating_sub(before.tasks.get(key).map_or(0, |(_, t)| *t));
        let into = if key.0 || group == "PostgreSQL server" {
            &mut ours
        } else {
            &mut others
        };
        *into.entry(group.clone()).or_default() += used;
    }
    let own_live: u64 = after
        .tasks
        .iter()
        .filter(|(key, _)| key.0)
        .map(|(key, (_, ticks))| ticks.saturating_sub(before.tasks.get(key).map_or(0, |(_, t)| *t)))
        .sum();
    let own_ended = after
        .own_total
        .saturating_sub(before.own_total)
        .saturating_sub(own_live);
    if own_ended > 0 {
        ours.insert("this process's ended threads".to_owned(), own_ended);
    }
    let mut usage = Usage::default();
    let mut counted = 0;
    for (group, used) in ours.into_iter().chain(others) {
        counted += used;
        if cores(used) >= NOTABLE_CORES {
            usage.cores.push((group, cores(used)));
        }
    }
    // Kernel interrupt work (loopback TCP) lands here when the kernel accounts IRQ
    // time apart from tasks, as do tasks that ended in the window.
    let busy = after.machine_busy.saturating_sub(before.machine_busy);
    usage.cores.push((
        "unattributed (ended tasks, kernel)".to_owned(),
        cores(busy.saturating_sub(counted)),
    ));
    usage.cores.push((
        "idle".to_owned(),
        cores(after.machine_idle.saturating_sub(before.machine_idle)),
    ));
    usage
}

impl Usage {
    /// One line: `identity 1.02, load generator 0.71, …, idle 0.05 cores`.
    pub(crate) fn describe(&self) -> String {
        let mut text = String::new();
        for (i, (group, cores)) in self.cores.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            let _ = write!(text, "{separator}{group} {cores:.2}");
        }
        text.push_str(" cores");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_name_and_cpu_ticks_even_with_spaces_in_the_name() {
        let line = "42 (load generator) S 1 1 1 0 -1 0 0 0 0 0 700 55 0 0 20 0 2 0";
        assert_eq!(parse_stat(line), Some(("load generator".to_owned(), 755)));
        assert_eq!(group_of_thread("identity-worker"), "identity");
    }
}
