//! The SMTP channel against the real test SMTP server (aiosmtpd): mails sent one after
//! the other on a kept connection take what the server needs, not the 40 ms a delayed
//! ACK adds when the client's last write of a message waits behind Nagle's algorithm;
//! `--smtp-url` is understood.

use std::time::{Duration, Instant};

use lettre::message::Mailbox;
use tessera_notification::channel::smtp::{SmtpChannel, SmtpSettings, SmtpTls};
use tessera_notification::channel::{Channel, Outgoing};
use testkit::SmtpServer;

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
