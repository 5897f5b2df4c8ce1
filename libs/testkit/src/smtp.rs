//! A real SMTP server of a test's own (`tools/smtp-server`, aiosmtpd), so that no other
//! test's mail or control request (refuse, delay) reaches this one. Every accepted
//! message is a `.eml` file in its directory, its envelope a `.json` file beside it;
//! killed on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// How long the server may take to announce its ports: the first start on a machine
/// installs aiosmtpd into a virtualenv.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A running `tools/smtp-server`.
#[derive(Debug)]
pub struct SmtpServer {
    port: u16,
    /// Base URL of its HTTP control port (`/reply`, `/delay`, `/stats`).
    control: String,
    dir: PathBuf,
    // Declared before the directory so that the server is killed before it is deleted.
    _child: tokio::process::Child,
    _own_dir: Option<tempfile::TempDir>,
}

impl SmtpServer {
    /// Starts the server writing into a temporary directory of its own.
    ///
    /// # Panics
    /// When the script cannot be run or announces no ports in time.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a directory for the SMTP server's mail");
        let path = dir.path().to_owned();
        Self::launch(&path, Some(dir)).await
    }

    /// Starts the server writing into `dir` (created if missing) and waits for its
    /// ports line.
    ///
    /// # Panics
    /// When the script cannot be run or announces no ports in time.
    pub async fn start_in(dir: &Path) -> Self {
        Self::launch(dir, None).await
    }

    async fn launch(dir: &Path, own_dir: Option<tempfile::TempDir>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/smtp-server");
        let mut child = tokio::process::Command::new(&script)
            .args(["--port", "0", "--dir"])
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
            .await
            .unwrap_or_else(|_| {
                panic!("tools/smtp-server announces its ports within {START_TIMEOUT:?}")
            })
            .expect("read the ports line");
        let ports: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("ports line {line:?}: {e}"));
        let port = |name: &str| {
            ports[name]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or_else(|| panic!("{name} in the ports line {line:?}"))
        };
        Self {
            port: port("smtp_port"),
            control: format!("http://127.0.0.1:{}", port("control_port")),
            dir: dir.to_owned(),
            _child: child,
            _own_dir: own_dir,
        }
    }

    /// The SMTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP, as for a local relay.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Answers DATA with `code` for the next `count` messages.
    ///
    /// # Panics
    /// When the control port does not answer 200.
    pub async fn refuse_next(&self, code: u16, count: u32) {
        self.control("reply", &json!({ "code": code, "count": count }))
            .await;
    }

    /// Holds every DATA answer for `ms` milliseconds (0: answer at once again).
    ///
    /// # Panics
    /// When the control port does not answer 200.
    pub async fn delay(&self, ms: u64) {
        self.control("delay", &json!({ "ms": ms })).await;
    }

    async fn control(&self, path: &str, body: &Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/{path}", self.control))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("SMTP server control /{path}: {e}"));
        assert_eq!(response.status(), 200, "SMTP server control /{path}");
    }

    /// (accepted, refused) messages so far.
    ///
    /// # Panics
    /// When the control port does not answer.
    pub async fn stats(&self) -> (u64, u64) {
        let stats: Value = reqwest::get(format!("{}/stats", self.control))
            .await
            .expect("SMTP server stats")
            .json()
            .await
            .expect("SMTP server stats as JSON");
        (
            stats["accepted"].as_u64().unwrap_or_default(),
            stats["refused"].as_u64().unwrap_or_default(),
        )
    }

    /// Every accepted message so far, oldest first.
    ///
    /// # Panics
    /// When its directory cannot be read.
    pub fn messages(&self) -> Vec<Mail> {
        let mut names = self.files("eml");
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|raw| Mail::parse(&raw))
            .collect()
    }

    /// The messages whose `To` contains `address`.
    pub fn messages_to(&self, address: &str) -> Vec<Mail> {
        self.messages()
            .into_iter()
            .filter(|m| m.header("to").contains(address))
            .collect()
    }

    /// How many messages were accepted so far.
    ///
    /// # Panics
    /// When its directory cannot be read.
    pub fn count(&self) -> usize {
        self.files("json").len()
    }

    /// Every accepted message so far: (first recipient, when it was accepted). The
    /// server writes a message's envelope just before it answers 250, so the file's
    /// modification time is the acceptance time.
    ///
    /// # Panics
    /// When its directory or an envelope cannot be read.
    pub fn accepted(&self) -> Vec<(String, SystemTime)> {
        self.files("json")
            .iter()
            .filter_map(|path| {
                let modified = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let envelope: Value = std::fs::read(path)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or_else(|| panic!("{} is an envelope", path.display()));
                let to = envelope["rcpt_tos"][0].as_str()?;
                Some((to.to_owned(), modified))
            })
            .collect()
    }

    /// The files in its directory ending in `.<extension>` (the server renames each into
    /// place whole).
    fn files(&self, extension: &str) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .unwrap_or_else(|e| panic!("read the mail dir {}: {e}", self.dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == extension))
            .collect()
    }
}

/// An accepted email: headers (names lowercase) and the decoded text body.
#[derive(Debug, Clone)]
pub struct Mail {
    headers: Vec<(String, String)>,
    body: String,
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
        let mut mail = Self {
            headers,
            body: String::new(),
        };
        mail.body = match mail
            .header("content-transfer-encoding")
            .to_ascii_lowercase()
            .as_str()
        {
            "base64" => {
                let compact: String = body.split_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_or_else(
                        |_| body.to_owned(),
                        |b| String::from_utf8_lossy(&b).into_owned(),
                    )
            }
            "quoted-printable" => quoted_printable(body),
            _ => body.to_owned(),
        };
        mail
    }

    /// A header's value (the first of that name; empty when absent). Encoded words
    /// (RFC 2047) in UTF-8 are decoded.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(String::new, |(_, v)| decode_words(v))
    }

    /// The text body, transfer encoding undone.
    pub fn body(&self) -> &str {
        &self.body
    }
}

fn quoted_printable(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let (line, soft) = line
            .strip_suffix('=')
            .map_or((line, false), |stripped| (stripped, true));
        let mut chars = line.bytes();
        while let Some(b) = chars.next() {
            if b == b'=' {
                let hex: Vec<u8> = chars.by_ref().take(2).collect();
                if let Some(byte) = std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    bytes.push(byte);
                } else {
                    bytes.push(b'=');
                    bytes.extend(hex);
                }
            } else {
                bytes.push(b);
            }
        }
        if !soft && lines.peek().is_some() {
            bytes.push(b'\n');
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Decodes `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words; anything else stays as is.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        let Some(end) = rest[start + 2..].find("?=").map(|e| start + 2 + e) else {
            break;
        };
        let word = &rest[start + 2..end];
        let parts: Vec<&str> = word.splitn(3, '?').collect();
        let decoded = match parts.as_slice() {
            [charset, encoding, text] if charset.eq_ignore_ascii_case("utf-8") => {
                if encoding.eq_ignore_ascii_case("b") {
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                } else if encoding.eq_ignore_ascii_case("q") {
                    Some(quoted_printable(&text.replace('_', " ")))
                } else {
                    None
                }
            }
            _ => None,
        };
        let before = &rest[..start];
        // Whitespace between two encoded words is not part of the text (RFC 2047 §6.2).
        if !(decoded.is_some() && before.trim().is_empty() && !out.is_empty()) {
            out.push_str(before);
        }
        match decoded {
            Some(text) => out.push_str(&text),
            None => out.push_str(&rest[start..end + 2]),
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_headers_are_decoded() {
        let mail = Mail::parse(
            "Subject: =?utf-8?b?QmllbnZlbnVlIMOg?= =?utf-8?q?_vous?=\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             Votre profil est pr=C3=AAt, c'est une tr=\r\nes longue ligne.\r\nFin",
        );
        assert_eq!(mail.header("subject"), "Bienvenue à vous");
        assert_eq!(
            mail.body(),
            "Votre profil est prêt, c'est une tres longue ligne.\nFin"
        );
        let mail = Mail::parse("Content-Transfer-Encoding: base64\n\nQm9uam91ciBBZGEsCg==\n");
        assert_eq!(mail.body(), "Bonjour Ada,\n");
    }
}
