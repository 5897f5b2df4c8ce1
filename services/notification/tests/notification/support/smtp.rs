//! A real SMTP server (`tools/smtp-server`, aiosmtpd) in a child process, steered over
//! its control port, and the emails it accepted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A real SMTP server in a child process, killed on drop.
pub(crate) struct SmtpServer {
    pub(crate) port: u16,
    control: String,
    pub(crate) dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl SmtpServer {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/smtp-server");
        let mut child = tokio::process::Command::new(script)
            .args(["--port", "0", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tools/smtp-server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(120),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the SMTP server announces its ports")
        .expect("read");
        let ports: Value = serde_json::from_str(&line).expect("ports line");
        Self {
            port: u16::try_from(ports["smtp_port"].as_u64().expect("smtp port")).expect("port"),
            control: format!("http://127.0.0.1:{}", ports["control_port"]),
            dir,
            _child: child,
        }
    }

    /// Answers DATA with `code` for the next `count` messages.
    pub(crate) async fn refuse_next(&self, code: u16, count: u32) {
        let response = reqwest::Client::new()
            .post(format!("{}/reply", self.control))
            .json(&json!({ "code": code, "count": count }))
            .send()
            .await
            .expect("control");
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Holds every DATA answer for `ms`.
    pub(crate) async fn delay(&self, ms: u64) {
        reqwest::Client::new()
            .post(format!("{}/delay", self.control))
            .json(&json!({ "ms": ms }))
            .send()
            .await
            .expect("control");
    }

    /// (accepted, refused) so far.
    pub(crate) async fn stats(&self) -> (u64, u64) {
        let stats: Value = reqwest::get(format!("{}/stats", self.control))
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        (
            stats["accepted"].as_u64().unwrap_or_default(),
            stats["refused"].as_u64().unwrap_or_default(),
        )
    }

    /// Every accepted message, oldest first.
    pub(crate) fn messages(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read mail dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| Mail::parse(&std::fs::read_to_string(p).expect("read mail")))
            .collect()
    }
}

/// An accepted email.
#[derive(Debug, Clone)]
pub(crate) struct Mail {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Mail {
    fn parse(raw: &str) -> Self {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        Self {
            headers,
            body: body.to_owned(),
        }
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}
