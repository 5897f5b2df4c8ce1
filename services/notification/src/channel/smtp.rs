//! Email over SMTP with lettre: STARTTLS, implicit TLS or plain (local relays only),
//! optional authentication, pooled connections. TLS is rustls with aws-lc-rs.

use std::time::Duration;

use futures_util::future::BoxFuture;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::{Channel, Outgoing, SendError};

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only for a relay on the same host or network (tests, sidecars).
    None,
}

/// Settings of the SMTP channel.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Everything in one URL (lettre's format); overrides the fields below.
    pub url: Option<SecretString>,
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: Mailbox,
    pub timeout: Duration,
}

/// Builds the email a job sends: plain text, `Message-ID` derived from the job id.
pub fn build_message(from: &Mailbox, message: &Outgoing) -> Result<Message, SendError> {
    let to: Mailbox = message
        .to
        .parse()
        .map_err(|e| SendError::Permanent(format!("invalid recipient address: {e}")))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(message.subject.clone().unwrap_or_default())
        .message_id(Some(format!("<{}@tessera.notification>", message.job_id)))
        .header(ContentType::TEXT_PLAIN)
        .body(message.body.clone())
        .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
}

/// The SMTP channel.
pub struct SmtpChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpChannel")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpChannel {
    pub fn new(settings: &SmtpSettings) -> Result<Self, String> {
        if let Some(url) = &settings.url {
            // The URL holds the password: never repeat it in the error.
            let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                .map_err(|_| {
                    "--smtp-url: expected smtps://user:pass@host:465 or smtp://user:pass@host:587?tls=required"
                        .to_owned()
                })?;
            return Ok(Self {
                transport: builder.timeout(Some(settings.timeout)).build(),
                from: settings.from.clone(),
            });
        }
        let host = settings.host.as_str();
        let builder = match settings.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("--smtp-host: {e}"))?,
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("--smtp-host: {e}"))?,
        };
        let mut builder = builder.port(settings.port).timeout(Some(settings.timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from: settings.from.clone(),
        })
    }
}

impl Channel for SmtpChannel {
    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let email = build_message(&self.from, message)?;
            match self.transport.send(email).await {
                Ok(_) => Ok(()),
                // 5xx: the server refuses for good. Everything else (4xx, connection
                // refused, timeouts, TLS trouble) may pass.
                Err(error) if error.is_permanent() => Err(SendError::Permanent(error.to_string())),
                Err(error) => Err(SendError::Transient(error.to_string())),
            }
        })
    }
}
