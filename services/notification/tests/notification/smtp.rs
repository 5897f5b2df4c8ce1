//! The SMTP channel against the real test SMTP server (aiosmtpd): mails sent one after
//! the other on a kept connection take what the server needs, not the 40 ms a delayed
//! ACK adds when the client's last write of a message waits behind Nagle's algorithm;
//! `--smtp-url` is understood. Against a scripted server that ends connections when a
//! test says: no `NOOP` before a mail on a kept connection, a kept connection the server
//! closed is replaced without losing or repeating the mail, and a message whose answer
//! never came is not sent again by the channel.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::message::Mailbox;
use tessera_notification::channel::smtp::{SmtpChannel, SmtpSettings, SmtpTls};
use tessera_notification::channel::{Channel, Outgoing, SendError};
use testkit::SmtpServer;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn channel(port: u16, url: Option<String>) -> SmtpChannel {
    let from: Mailbox = "Tessera <noreply@tessera.test>".parse().expect("mailbox");
    SmtpChannel::new(&SmtpSettings {
        url: url.map(Into::into),
        host: "127.0.0.1".to_owned(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from,
        timeout: Duration::from_secs(10),
        pool_size: 4,
    })
    .expect("SMTP channel")
}

fn mail(n: usize) -> Outgoing {
    Outgoing {
        job_id: format!("0190a0a0-0000-7000-8000-{n:012}"),
        to: format!("user{n}@example.test"),
        subject: Some("Welcome to Tessera".to_owned()),
        body: "Hello,\n\nwelcome to Tessera: your profile is ready.\n".repeat(8),
    }
}

#[tokio::test]
async fn mails_on_a_kept_connection_are_not_held_back_by_delayed_acks() {
    let smtp = SmtpServer::start().await;
    let channel = channel(smtp.port(), None);
    channel.send(&mail(0)).await.expect("first mail");
    let mut took = Vec::new();
    for n in 1..=30 {
        let started = Instant::now();
        channel.send(&mail(n)).await.expect("mail accepted");
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    // The server needs a few milliseconds per mail; a send stalled by a delayed ACK
    // takes 40 ms or more (Linux's minimum delayed-ACK timeout).
    assert!(
        median < Duration::from_millis(20),
        "median send {median:?} (all: {took:?})"
    );
    assert_eq!(smtp.count(), 31, "every mail accepted once");
}

#[tokio::test]
async fn the_url_form_reaches_the_server_and_keeps_its_connection() {
    let smtp = SmtpServer::start().await;
    // --smtp-url overrides host and port (port 1 would refuse).
    let channel = channel(1, Some(smtp.url()));
    channel.send(&mail(1)).await.expect("first mail");
    channel.send(&mail(2)).await.expect("second mail");
    let mut to: Vec<String> = smtp.accepted().into_iter().map(|(to, _)| to).collect();
    to.sort();
    assert_eq!(to, vec!["user1@example.test", "user2@example.test"]);
}

/// How a scripted server ends a connection after its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Keeps it open.
    Never,
    /// Closes it without a word after answering the message (an idle timeout, a restart).
    Drop,
    /// Answers the next command `421` and closes it (a server announcing its timeout).
    Goodbye,
    /// Takes the message and closes it before answering (the connection broke in the
    /// worst place).
    BeforeAnswer,
}

/// What a scripted server saw.
#[derive(Debug, Default)]
struct Seen {
    connections: usize,
    noops: usize,
    /// The `Message-ID` of every message taken, in order.
    messages: Vec<String>,
}

/// A scripted SMTP server on loopback: it accepts everything and ends each connection
/// after one message as `ending` says, so a test controls when a kept connection dies.
async fn scripted(ending: Ending) -> (u16, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let counted = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.lock().expect("seen").connections += 1;
            tokio::spawn(converse(socket, ending, counted.clone()));
        }
    });
    (port, seen)
}

async fn converse(socket: TcpStream, ending: Ending, seen: Arc<Mutex<Seen>>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut taken = 0;
    let _ = write.write_all(b"220 scripted ESMTP\r\n").await;
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        if taken > 0 && ending == Ending::Goodbye {
            let _ = write.write_all(b"421 closing idle connection\r\n").await;
            return;
        }
        let answer: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 scripted\r\n",
            "NOOP" => {
                seen.lock().expect("seen").noops += 1;
                b"250 OK\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            "DATA" => {
                let _ = write.write_all(b"354 go ahead\r\n").await;
                let mut id = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == "." {
                        break;
                    }
                    if let Some(value) = line.strip_prefix("Message-ID: ") {
                        value.clone_into(&mut id);
                    }
                }
                seen.lock().expect("seen").messages.push(id);
                taken += 1;
                match ending {
                    Ending::BeforeAnswer => return,
                    Ending::Drop => {
                        let _ = write.write_all(b"250 taken\r\n").await;
                        return;
                    }
                    Ending::Never | Ending::Goodbye => b"250 taken\r\n",
                }
            }
            _ => b"250 OK\r\n",
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}

fn message_id(n: usize) -> String {
    format!("<{}@tessera.notification>", mail(n).job_id)
}

#[tokio::test]
async fn mails_on_a_kept_connection_go_without_a_noop_before_each() {
    let (port, seen) = scripted(Ending::Never).await;
    let channel = channel(port, None);
    for n in 1..=3 {
        channel.send(&mail(n)).await.expect("mail accepted");
    }
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.messages, [message_id(1), message_id(2), message_id(3)]);
    assert_eq!(seen.connections, 1, "one kept connection");
    assert_eq!(seen.noops, 0, "no NOOP round trip before a mail");
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_is_replaced_and_the_mail_sent_once() {
    for ending in [Ending::Drop, Ending::Goodbye] {
        let (port, seen) = scripted(ending).await;
        let channel = channel(port, None);
        channel.send(&mail(1)).await.expect("first mail");
        // The server has closed (or will refuse) the kept connection by now.
        channel
            .send(&mail(2))
            .await
            .expect("second mail, on a new connection");
        let seen = seen.lock().expect("seen");
        assert_eq!(
            seen.messages,
            [message_id(1), message_id(2)],
            "{ending:?}: each once"
        );
        assert_eq!(seen.connections, 2, "{ending:?}");
    }
}

#[tokio::test]
async fn a_message_whose_answer_is_lost_is_not_sent_again_by_the_channel() {
    let (port, seen) = scripted(Ending::BeforeAnswer).await;
    let channel = channel(port, None);
    let sent = channel.send(&mail(1)).await;
    assert!(
        matches!(sent, Err(SendError::Transient(_))),
        "the send failed, to be retried by its job: {sent:?}"
    );
    let seen = seen.lock().expect("seen");
    // The server may have kept the message: only the job's retry (same Message-ID, after
    // its schedule) may send it again, not the channel at once.
    assert_eq!(seen.messages, [message_id(1)]);
    assert_eq!(seen.connections, 1);
}
