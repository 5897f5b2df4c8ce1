//! Email over SMTP with lettre's protocol client: STARTTLS, implicit TLS or plain (local
//! relays only), optional authentication, pooled connections. TLS is rustls with aws-lc-rs.
//!
//! The connections are opened here, not by lettre's transport, to set `TCP_NODELAY`:
//! lettre writes a message's body and its closing `.` in two writes and then waits for
//! the answer. With Nagle's algorithm on, the second write waits for the server's ACK of
//! the first, and the server delays that ACK (40 ms on Linux) because it has nothing to
//! say until the `.` arrives: every mail took 40 ms longer than the server needed.
//! lettre fixed this upstream (lettre/lettre#1159, merged after 0.11.23, the latest
//! release on 2026-11-26): once a release has it, this module can go back to lettre's
//! pooled `AsyncSmtpTransport`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;

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
    /// Longest wait for a new connection's session (TCP, TLS, EHLO, AUTH).
    pub timeout: Duration,
    /// Connections kept open between sends (one per delivery worker serves them all).
    pub pool_size: u32,
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

/// How long a connection may sit unused in the pool before it is closed (lettre's
/// default): servers drop idle clients after a few minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How a connection is secured, with the TLS parameters for the host.
#[derive(Clone)]
enum Security {
    Plain,
    /// STARTTLS, required.
    Starttls(TlsParameters),
    /// STARTTLS when the server offers it (`?tls=opportunistic` in the URL).
    Opportunistic(TlsParameters),
    /// TLS from the first byte.
    Implicit(TlsParameters),
}

/// Where and how to open a connection.
#[derive(Clone)]
struct Endpoint {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
}

/// Why a send failed.
enum Failure {
    /// The server answered (or the protocol broke): lettre's error.
    Smtp(lettre::transport::smtp::Error),
    /// The connection could not be opened in time.
    Connect(String),
    /// The message needs an extension the server does not offer.
    Unsupported(&'static str),
}

/// The server's `421`: it is closing the connection (an idle timeout, a restart).
const CLOSING: &str = "421";

impl Failure {
    /// Whether the connection was gone rather than the server refusing: the connection
    /// broke or ended without an answer, or the server said it is closing it.
    fn is_closed_connection(&self) -> bool {
        match self {
            Self::Smtp(error) if error.is_transient() => error
                .status()
                .is_some_and(|code| code.to_string() == CLOSING),
            Self::Smtp(error) => !error.is_permanent(),
            Self::Connect(_) | Self::Unsupported(_) => false,
        }
    }
}

const URL_ERROR: &str =
    "--smtp-url: expected smtps://user:pass@host:465 or smtp://user:pass@host:587?tls=required";

impl Endpoint {
    /// From lettre's URL format: `smtp://` (plain, port 25), `smtp://…?tls=required` or
    /// `?tls=opportunistic` (STARTTLS, port 587), `smtps://` (implicit TLS, port 465);
    /// user and password percent-encoded; a path names the EHLO domain.
    fn from_url(url: &str, timeout: Duration) -> Result<Self, String> {
        // The URL holds the password: never repeat it in the error.
        let url = url::Url::parse(url).map_err(|_| URL_ERROR.to_owned())?;
        let host = url
            .host_str()
            .ok_or_else(|| URL_ERROR.to_owned())?
            .to_owned();
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let parameters =
            || TlsParameters::new(host.clone()).map_err(|e| format!("--smtp-url: {e}"));
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
            ("smtp", Some("required")) => (Security::Starttls(parameters()?), 587),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic(parameters()?), 587),
            ("smtps", _) => (Security::Implicit(parameters()?), 465),
            _ => return Err(URL_ERROR.to_owned()),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
                .map_err(|_| URL_ERROR.to_owned())
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(decode(url.username())?, decode(password)?)),
            None => None,
        };
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        Ok(Self {
            port: url.port().unwrap_or(default_port),
            host,
            security,
            credentials,
            hello,
            timeout,
        })
    }

    fn from_settings(settings: &SmtpSettings) -> Result<Self, String> {
        let host = settings.host.clone();
        let parameters =
            || TlsParameters::new(host.clone()).map_err(|e| format!("--smtp-host: {e}"));
        let security = match settings.tls {
            SmtpTls::None => Security::Plain,
            SmtpTls::Starttls => Security::Starttls(parameters()?),
            SmtpTls::Implicit => Security::Implicit(parameters()?),
        };
        let credentials = match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            )),
            _ => None,
        };
        Ok(Self {
            host,
            port: settings.port,
            security,
            credentials,
            hello: ClientId::default(),
            timeout: settings.timeout,
        })
    }

    /// A new connection: TCP with `TCP_NODELAY`, TLS as configured, EHLO, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                Failure::Connect(format!(
                    "cannot connect to {}:{}: {e}",
                    self.host, self.port
                ))
            })?;
        tcp.set_nodelay(true)
            .map_err(|e| Failure::Connect(format!("cannot set TCP_NODELAY: {e}")))?;
        let mut conn = match &self.security {
            Security::Implicit(parameters) => {
                let stream = Tls::handshake(tcp, parameters.clone())
                    .await
                    .map_err(Failure::Smtp)?;
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await,
        }
        .map_err(Failure::Smtp)?;
        match &self.security {
            Security::Starttls(parameters) => conn.starttls(parameters.clone(), &self.hello).await,
            Security::Opportunistic(parameters) if conn.can_starttls() => {
                conn.starttls(parameters.clone(), &self.hello).await
            }
            _ => Ok(()),
        }
        .map_err(Failure::Smtp)?;
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(Failure::Smtp)?;
        }
        Ok(conn)
    }
}

/// Implicit TLS over a `TCP_NODELAY` socket, through lettre's own TLS setup (the same
/// rustls configuration and certificate checks as its transport).
#[expect(
    deprecated,
    reason = "lettre's only way to wrap a socket of our own in its TLS"
)]
#[derive(Debug)]
struct Tls(lettre::transport::smtp::client::AsyncNetworkStream);

#[expect(
    deprecated,
    reason = "lettre's only way to wrap a socket of our own in its TLS"
)]
impl Tls {
    async fn handshake(
        tcp: TcpStream,
        parameters: TlsParameters,
    ) -> Result<Self, lettre::transport::smtp::Error> {
        let mut stream =
            lettre::transport::smtp::client::AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
        stream.upgrade_tls(parameters).await?;
        Ok(Self(stream))
    }
}

impl tokio::io::AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = futures_util::io::AsyncRead::poll_read(
            Pin::new(&mut self.0),
            cx,
            buf.initialize_unfilled(),
        );
        read.map_ok(|n| buf.advance(n))
    }
}

impl tokio::io::AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        futures_util::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_util::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_util::io::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }
}

/// The SMTP channel: connections kept between sends, at most `pool_size` of them idle.
pub struct SmtpChannel {
    endpoint: Endpoint,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    pool_size: usize,
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
        let endpoint = match &settings.url {
            Some(url) => Endpoint::from_url(url.expose_secret(), settings.timeout)?,
            None => Endpoint::from_settings(settings)?,
        };
        Ok(Self {
            endpoint,
            idle: Mutex::new(Vec::new()),
            pool_size: usize::try_from(settings.pool_size.max(1)).unwrap_or(usize::MAX),
            from: settings.from.clone(),
        })
    }

    /// A kept connection, newest first; `None` when none is left. Connections idle for
    /// longer than the server is likely to keep them are closed instead.
    async fn parked(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, since) = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop()?;
            if since.elapsed() < IDLE_TIMEOUT {
                return Some(conn);
            }
            conn.abort().await;
        }
    }

    /// A new connection within the endpoint's timeout.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let timeout = self.endpoint.timeout;
        tokio::time::timeout(timeout, self.endpoint.connect())
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Connect(format!(
                    "no SMTP session with {}:{} within {timeout:?}",
                    self.endpoint.host, self.endpoint.port
                )))
            })
    }

    /// Puts a connection back unless it broke or the pool is full.
    async fn checkin(&self, mut conn: AsyncSmtpConnection) {
        if !conn.has_broken() {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < self.pool_size {
                idle.push((conn, Instant::now()));
                return;
            }
        }
        conn.abort().await;
    }

    /// Sends `email` on a kept connection, or a new one when none is kept.
    ///
    /// A kept connection is not tested with `NOOP` first, as lettre's pool does: that is
    /// a round trip per mail for both sides (one command in six) that finds nothing while
    /// connections stay up. One the server closed in the meantime fails in the envelope
    /// (`MAIL`, `RCPT`, `DATA`), before any of the message went out, so the mail goes on
    /// another connection: not lost, and not sent twice. Once the message is on its way,
    /// a failure is the send's (trying again could deliver it twice), and so is any
    /// failure on a new connection or an answer from a server that is still there.
    async fn send_message(&self, email: &Message) -> Result<(), Failure> {
        let envelope = email.envelope();
        let content = email.formatted();
        while let Some(mut conn) = self.parked().await {
            match open_envelope(&mut conn, envelope, &content).await {
                Ok(()) => return self.transfer(conn, &content).await,
                Err(failure) => {
                    conn.abort().await;
                    if !failure.is_closed_connection() {
                        return Err(failure);
                    }
                }
            }
        }
        let mut conn = self.connect().await?;
        if let Err(failure) = open_envelope(&mut conn, envelope, &content).await {
            conn.abort().await;
            return Err(failure);
        }
        self.transfer(conn, &content).await
    }

    /// Sends the message after the server accepted `DATA`; keeps the connection when
    /// the server took the message.
    async fn transfer(&self, mut conn: AsyncSmtpConnection, content: &[u8]) -> Result<(), Failure> {
        match conn.message(content).await {
            Ok(_) => {
                self.checkin(conn).await;
                Ok(())
            }
            Err(error) => {
                conn.abort().await;
                Err(Failure::Smtp(error))
            }
        }
    }
}

/// `MAIL`, `RCPT` for each recipient and `DATA`: what lettre's `send` does before the
/// message itself, with `SMTPUTF8` and `8BITMIME` where the addresses or the message
/// need them.
async fn open_envelope(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    content: &[u8],
) -> Result<(), Failure> {
    let mut options = Vec::new();
    let non_ascii_address = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|address| !AsRef::<str>::as_ref(address).is_ascii());
    if non_ascii_address {
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure::Unsupported(
                "the address is not ASCII and the server does not support SMTPUTF8",
            ));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !content.is_ascii() {
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            return Err(Failure::Unsupported(
                "the message is not ASCII and the server does not support 8BITMIME",
            ));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    conn.command(Mail::new(envelope.from().cloned(), options))
        .await
        .map_err(Failure::Smtp)?;
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), Vec::new()))
            .await
            .map_err(Failure::Smtp)?;
    }
    conn.command(Data).await.map_err(Failure::Smtp)?;
    Ok(())
}

impl Channel for SmtpChannel {
    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let email = build_message(&self.from, message)?;
            match self.send_message(&email).await {
                Ok(()) => Ok(()),
                // 5xx: the server refuses for good. Everything else (4xx, connection
                // refused, timeouts, TLS trouble) may pass.
                Err(Failure::Smtp(error)) if error.is_permanent() => {
                    Err(SendError::Permanent(error.to_string()))
                }
                Err(Failure::Smtp(error)) => Err(SendError::Transient(error.to_string())),
                Err(Failure::Connect(reason)) => Err(SendError::Transient(reason)),
                Err(Failure::Unsupported(reason)) => Err(SendError::Permanent(reason.to_owned())),
            }
        })
    }
}
