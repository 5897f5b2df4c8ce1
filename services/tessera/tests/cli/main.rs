//! The `tessera` binary as a user runs it: `tessera dev` starts, answers on its admin
//! port, stops on Ctrl-C; bad settings stop it at once with one clear line.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tessera() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .env_remove("RUST_LOG")
        .env_remove("TESSERA_ADMIN_LISTEN")
        .env_remove("TESSERA_DATA_DIR");
    command
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_for_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "tessera did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn tessera_dev_prints_what_runs_where_answers_healthz_and_stops_on_ctrl_c() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = tessera()
        .args(["dev", "--admin-listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tessera");

    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut summary = String::new();
    while !summary.contains("Ctrl-C") {
        assert!(
            stdout.read_line(&mut summary).expect("read") > 0,
            "stdout closed: {summary}"
        );
    }
    assert!(
        summary.contains(&format!("http://127.0.0.1:{port}")),
        "{summary}"
    );
    assert!(summary.contains("not built yet"), "{summary}");
    assert!(data.path().join("state").is_dir());

    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success());
    let status = wait_for_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_malformed_setting_stops_tessera_with_one_line_naming_it() {
    let output = tessera()
        .args(["dev"])
        .env("TESSERA_ADMIN_LISTEN", "localhost-ish")
        .output()
        .expect("run tessera");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--admin-listen") && stderr.contains("localhost-ish"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_invalid_log_filter_stops_tessera_with_one_line_naming_it() {
    let output = tessera()
        .args(["dev"])
        .env("RUST_LOG", "info,=[")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("RUST_LOG"), "{stderr}");
}

#[test]
fn a_busy_admin_port_is_reported_with_the_setting_to_change() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let data = tempfile::tempdir().expect("tempdir");
    let output = tessera()
        .args(["dev", "--admin-listen", &addr.to_string()])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(
        stderr.contains("--admin-listen") && stderr.contains(&addr.to_string()),
        "{stderr}"
    );
}
