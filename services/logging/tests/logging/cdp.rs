//! A minimal client of Chromium's debugging protocol (CDP) for driving the explorer in
//! real headless Chromium: the browser speaks CDP over `--remote-debugging-pipe` (JSON
//! messages ended by a NUL byte, read from fd 3 and written to fd 4), so no WebSocket
//! crate and no browser-automation crate is needed. Only what the tests use: open a
//! page, evaluate JavaScript, click with real mouse events, take a screenshot.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// How long one CDP command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a page may take to reach a state: generous, as Chromium shares a loaded
/// 2-core machine with the rest of the test run.
const WAIT_FOR: Duration = Duration::from_secs(60);

/// A headless Chromium under our control; killed when dropped.
pub(crate) struct Browser {
    _child: Child,
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
    next_id: AtomicU64,
}

/// One tab, attached through a flat CDP session.
pub(crate) struct Tab<'a> {
    browser: &'a Browser,
    session: String,
}

impl Browser {
    /// Starts Chromium (`TESSERA_TEST_CHROMIUM` or `/usr/bin/chromium`) with `flags` and
    /// a fresh profile in `profile`.
    pub(crate) fn launch(flags: &[&str], profile: &Path) -> Self {
        let binary =
            std::env::var("TESSERA_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        // The shell hands our stdin pipe to Chromium as fd 3 and our stdout pipe as fd 4,
        // the descriptors `--remote-debugging-pipe` uses; its own output goes to stderr.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(&binary)
            .args(flags)
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary} (tools/services up installs it): {e}"));
        let stdin = child.stdin.take().expect("stdin piped");
        let mut stdout = child.stdout.take().expect("stdout piped");
        let pending: Pending = Arc::default();
        let answers = pending.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match stdout.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buffer.extend_from_slice(&chunk[..n]);
                while let Some(end) = buffer.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = buffer.drain(..=end).collect();
                    let Ok(message) = serde_json::from_slice::<Value>(&message[..end]) else {
                        continue;
                    };
                    // Events (no id) are not needed: the tests poll the page instead.
                    if let Some(id) = message.get("id").and_then(Value::as_u64) {
                        let waiter = answers.lock().expect("pending").remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(message);
                        }
                    }
                }
            }
        });
        Self {
            _child: child,
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends `method` (to `session` when given) and returns its `result`; panics with
    /// the browser's error message on failure.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (answer, receiver) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id, answer);
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        {
            let mut stdin = self.stdin.lock().await;
            stdin.write_all(&bytes).await.expect("write to Chromium");
            stdin.flush().await.expect("flush to Chromium");
        }
        let reply = tokio::time::timeout(COMMAND_TIMEOUT, receiver)
            .await
            .unwrap_or_else(|_| panic!("Chromium did not answer {method} within 30 s"))
            .expect("Chromium exited");
        if let Some(error) = reply.get("error") {
            panic!("{method} failed: {error}");
        }
        reply["result"].clone()
    }

    /// Opens `url` in a new tab.
    pub(crate) async fn open(&self, url: &str) -> Tab<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        let tab = Tab {
            browser: self,
            session: attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        };
        tab.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        tab.call("Page.navigate", json!({ "url": url })).await;
        tab
    }
}

impl Tab<'_> {
    async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// The value of the JavaScript `expression` (promises awaited).
    pub(crate) async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits up to [`WAIT_FOR`] until `expression` is truthy; panics naming `what` and
    /// the last value of `show` otherwise.
    pub(crate) async fn wait_for(&self, expression: &str, what: &str, show: &str) {
        let deadline = tokio::time::Instant::now() + WAIT_FOR;
        loop {
            let value = self.eval(&format!("!!({expression})")).await;
            if value == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let shown = self.eval(show).await;
                panic!("{what} did not happen within {WAIT_FOR:?}: {shown}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the middle of the element `element` (a JavaScript expression) with real
    /// mouse events, as a user would, after scrolling it into view.
    pub(crate) async fn click(&self, element: &str) {
        let point = self
            .eval(&format!(
                "(() => {{ const e = {element}; if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await;
        let (Some(x), Some(y)) = (point[0].as_f64(), point[1].as_f64()) else {
            panic!("nothing to click: {element}");
        };
        for (kind, buttons) in [("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left",
                        "buttons": buttons, "clickCount": 1 }),
            )
            .await;
        }
    }

    /// A PNG of the viewport.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64 PNG")
    }
}
