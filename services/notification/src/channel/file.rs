//! The all-in-one mode's channels: each message becomes a file in a directory (`.eml`
//! for email, `.json` for SMS and push), named after the job so a retried job rewrites
//! the same file instead of adding a second one.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use lettre::message::Mailbox;
use serde_json::json;

use super::smtp::build_message;
use super::{Channel, ChannelKind, Outgoing, SendError};

/// Writes messages of one channel into a directory.
#[derive(Debug)]
pub struct FileChannel {
    dir: PathBuf,
    kind: ChannelKind,
    from: Mailbox,
}

impl FileChannel {
    /// Creates `dir` if needed.
    pub fn new(dir: &Path, kind: ChannelKind, from: Mailbox) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            kind,
            from,
        })
    }
}

impl Channel for FileChannel {
    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let (extension, content) = match self.kind {
                ChannelKind::Email => ("eml", build_message(&self.from, message)?.formatted()),
                ChannelKind::Sms | ChannelKind::Push => (
                    "json",
                    serde_json::to_vec_pretty(&json!({
                        "id": message.job_id,
                        "to": message.to,
                        "title": message.subject,
                        "body": message.body,
                    }))
                    .unwrap_or_default(),
                ),
            };
            let path = self.dir.join(format!("{}.{extension}", message.job_id));
            let partial = self
                .dir
                .join(format!(".{}.{extension}.tmp", message.job_id));
            let io = |e: std::io::Error| SendError::Transient(format!("{}: {e}", path.display()));
            tokio::fs::write(&partial, content).await.map_err(io)?;
            tokio::fs::rename(&partial, &path).await.map_err(io)
        })
    }
}
