//! The `tessera` binary as a user runs it: `tessera dev` starts, answers on its admin
//! port, stops on Ctrl-C; bad settings stop it at once with one clear line.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `tessera dev` may take to get somewhere (ready, a log record, a mail): a
/// few seconds normally, far more on a loaded 2-core machine starting every service.
const WAIT: Duration = Duration::from_secs(60);

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

/// A free port below Linux's ephemeral range (32768–60999), for a server that restarts
/// on the same port: between its stop and its restart no `bind` to port 0 and no
/// outgoing connection (the other tests' servers and clients) can take it.
fn restartable_port() -> u16 {
    // Spread by the process id so concurrent test binaries start at different ports.
    let start = 20_000 + u16::try_from(std::process::id() % 10_000).unwrap_or(0);
    (start..32_000)
        .chain(20_000..start)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port below 32000")
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

/// A running `tessera dev` and what it printed.
struct Dev {
    child: Child,
    admin: String,
    gateway: String,
}

impl Drop for Dev {
    /// A failing test must not leave `tessera dev` running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    /// Starts `tessera dev` with the gateway on `gateway_port` (the issuer URL includes
    /// it, so a restart that should keep tokens valid must reuse it).
    fn start(data_dir: &std::path::Path, gateway_port: u16) -> Self {
        let admin_port = free_port();
        let log = data_dir.with_extension("log");
        let mut child = tessera()
            .args(["dev", "--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--listen", &format!("127.0.0.1:{gateway_port}")])
            .args(["--gateway-admin-listen", "127.0.0.1:0"])
            .args(["--identity-listen", "127.0.0.1:0"])
            .args(["--identity-admin-listen", "127.0.0.1:0"])
            .args(["--profile-listen", "127.0.0.1:0"])
            .args(["--profile-admin-listen", "127.0.0.1:0"])
            .args(["--notification-listen", "127.0.0.1:0"])
            .args(["--notification-admin-listen", "127.0.0.1:0"])
            .args(["--logging-listen", "127.0.0.1:0"])
            .args(["--logging-admin-listen", "127.0.0.1:0"])
            .args(["--bootstrap-admins", "ada@example.com"])
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            // Its log, for the message of a start that fails.
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn tessera");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut summary = String::new();
        while !summary.contains("Ctrl-C") {
            if stdout.read_line(&mut summary).expect("read") == 0 {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("stdout closed: {summary}\nits log:\n{log}");
            }
        }
        assert!(
            summary.contains(&format!("http://127.0.0.1:{admin_port}")),
            "{summary}"
        );
        assert!(!summary.contains("not built yet"), "{summary}");
        assert!(
            summary
                .lines()
                .any(|l| l.trim_start().starts_with("logging ")),
            "{summary}"
        );
        let gateway = summary
            .lines()
            .find(|l| l.trim_start().starts_with("gateway "))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no gateway line in:\n{summary}"))
            .to_owned();
        Self {
            child,
            admin: format!("http://127.0.0.1:{admin_port}"),
            gateway,
        }
    }

    async fn ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = reqwest::get(format!("{}/readyz", self.admin))
                .await
                .map(|r| r.status().as_u16());
            if matches!(ready, Ok(200)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tessera dev never became ready: {ready:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn interrupt(&mut self) -> std::process::ExitStatus {
        let interrupted = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(interrupted.success());
        // Seconds normally; a shutdown that hangs still fails.
        wait_for_exit(&mut self.child, Duration::from_secs(30))
    }
}

/// Every service's log records reach the in-process logging: an admin (`token`) finds
/// the request's records through the gateway by its request id; identity's signup and
/// login audit records reached logging's chain over the bus, and the chain verifies.
async fn logs_and_audit_reach_logging(
    http: &reqwest::Client,
    gateway: &str,
    token: &str,
    request_id: &str,
) {
    // Every service's log records reach the in-process logging; an admin finds the
    // request's records through the gateway by its request id.
    let records = format!("{gateway}/logging/v1/records");
    let anonymous = http.get(&records).send().await.expect("records");
    assert_eq!(anonymous.status(), 401);
    let deadline = Instant::now() + WAIT;
    let found = loop {
        let page: serde_json::Value = http
            .get(format!("{records}?request_id={request_id}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("records")
            .json()
            .await
            .expect("json");
        let found = page["records"].as_array().cloned().unwrap_or_default();
        // The gateway's and identity's records ship separately: wait for both.
        if found.len() >= 2 {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no log record with request id {request_id}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The gateway's and identity's access lines, one trace.
    let text = serde_json::Value::Array(found.clone()).to_string();
    assert!(found.len() >= 2, "{text}");
    assert!(
        found.iter().all(|r| r["request_id"] == request_id
            && r["body"] == "request finished"
            && r["trace_id"] == found[0]["trace_id"]),
        "{text}"
    );
    // The gateway's line (every service logs as `tessera` here) names the route it took
    // and the endpoint that answered.
    assert!(
        found.iter().any(|r| r["attributes"]["route"] == "me"
            && r["attributes"]["upstream"]
                .as_str()
                .is_some_and(|u| u.starts_with("http://127.0.0.1:"))),
        "no access line with the gateway's route and upstream: {text}"
    );

    // Identity's signup and login audit records reached logging's chain over the bus,
    // and the chain verifies.
    let audit = format!("{gateway}/logging/v1/audit");
    let deadline = Instant::now() + WAIT;
    loop {
        let page: serde_json::Value = http
            .get(format!("{audit}/records"))
            .bearer_auth(token)
            .send()
            .await
            .expect("audit records")
            .json()
            .await
            .expect("json");
        let text = page.to_string();
        if text.contains("signup") && text.contains("login") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no signup and login audit records: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let verify: serde_json::Value = http
        .get(format!("{audit}/verify"))
        .bearer_auth(token)
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    assert_eq!(verify["valid"], true, "{verify}");
    assert!(verify["records"].as_i64() >= Some(2), "{verify}");
}

#[tokio::test]
async fn tessera_dev_serves_the_readme_curl_session_through_the_gateway_and_stops_on_ctrl_c() {
    let data = tempfile::tempdir().expect("tempdir");
    let state = data.path().join("state");
    let port = restartable_port();
    let mut dev = Dev::start(&state, port);
    dev.ready().await;
    let http = reqwest::Client::new();
    let credentials = serde_json::json!({ "email": "ada@example.com", "password": "correct horse battery staple" });
    let signup = http
        .post(format!("{}/v1/signup", dev.gateway))
        .json(&credentials)
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 201);
    let login: serde_json::Value = http
        .post(format!("{}/v1/login", dev.gateway))
        .json(&credentials)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let me = http
        .get(format!("{}/v1/me", dev.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    let request_id = me
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id")
        .to_owned();
    let me: serde_json::Value = me.json().await.expect("json");
    assert_eq!(me["email"], "ada@example.com");
    assert!(state.join("identity.db").exists());

    logs_and_audit_reach_logging(&http, &dev.gateway, &token, &request_id).await;

    // The seed's flow inside one process: profile → user.created on the in-process bus →
    // the welcome email as a file in the data directory.
    let profile = http
        .post(format!("{}/v1/profiles", dev.gateway))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "email": "ada@example.com", "display_name": "Ada", "locale": "fr" }))
        .send()
        .await
        .expect("create profile");
    assert_eq!(profile.status(), 201);
    let mail_dir = state.join("mail");
    let deadline = Instant::now() + WAIT;
    let mail = loop {
        let found = std::fs::read_dir(&mail_dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"));
        if let Some(path) = found {
            break std::fs::read_to_string(path).expect("read mail");
        }
        assert!(
            Instant::now() < deadline,
            "no welcome email in {}",
            mail_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        mail.contains("Subject: Bienvenue sur Tessera, Ada"),
        "{mail}"
    );
    assert!(mail.contains("To: ada@example.com"), "{mail}");
    let status = dev.interrupt();
    assert!(status.success(), "exit status {status}");

    // A second run finds the same users and keys: the token from the first run still works.
    let mut again = Dev::start(&state, port);
    again.ready().await;
    let me = http
        .get(format!("{}/v1/me", again.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200);
    assert!(again.interrupt().success());
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

/// While logging cannot open its database (here: a directory where its SQLite file goes;
/// in real life, its migrations still running), identity's outbox waits for it instead
/// of pushing events into a consumer that fails, with a warning per attempt (found by
/// tools/schemathesis in the platform's log). Once logging's database opens, identity's
/// first audit event (its signing key became active) reaches logging's chain.
#[tokio::test]
async fn identity_events_wait_for_logging_instead_of_failing_against_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let state = data.path().join("state");
    let blocked = state.join("logging.db");
    std::fs::create_dir_all(&blocked).expect("mkdir");
    let (identity_admin, logging) = (free_port(), free_port());
    let mut child = tessera()
        .args([
            "dev",
            "--log-format",
            "json",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--gateway-admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--identity-listen", "127.0.0.1:0"])
        .args([
            "--identity-admin-listen",
            &format!("127.0.0.1:{identity_admin}"),
        ])
        .args(["--profile-listen", "127.0.0.1:0"])
        .args(["--profile-admin-listen", "127.0.0.1:0"])
        .args(["--notification-listen", "127.0.0.1:0"])
        .args(["--notification-admin-listen", "127.0.0.1:0"])
        .args(["--logging-listen", &format!("127.0.0.1:{logging}")])
        .args(["--logging-admin-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tessera");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let _stop = Dev {
        child,
        admin: String::new(),
        gateway: String::new(),
    };
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            collected.lock().expect("lock").push(line);
        }
    });
    let http = reqwest::Client::new();

    // Identity is ready; logging is not, and stays so for two seconds.
    let deadline = Instant::now() + WAIT;
    while !matches!(
        http.get(format!("http://127.0.0.1:{identity_admin}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16()),
        Ok(200)
    ) {
        assert!(Instant::now() < deadline, "identity never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::remove_dir(&blocked).expect("unblock logging's database");

    let deadline = Instant::now() + WAIT;
    loop {
        let page = http
            .get(format!("http://127.0.0.1:{logging}/v1/audit/records"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200);
        let text = match page {
            Some(r) => r.text().await.unwrap_or_default(),
            None => String::new(),
        };
        if text.contains("dev.tessera.identity.audit.key_state_changed.v1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "identity's key audit event never reached logging: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed: Vec<String> = lines
        .lock()
        .expect("lock")
        .iter()
        .filter(|l| l.contains("could not publish event"))
        .cloned()
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
