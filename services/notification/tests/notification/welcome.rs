//! The seed's flow: a profile is created, `user.created` travels over JetStream, and the
//! welcome message arrives by email (and SMS when the user has a phone and allows it).

use std::time::Duration;

use serde_json::Value;

use crate::support::{Options, SMS_AUTH, Stack, on_both_backends, profile};

const WITHIN: Duration = Duration::from_secs(30);

on_both_backends! {
    async fn a_new_profile_gets_one_welcome_email_in_its_locale(backend: Backend) {
        let stack = Stack::on(backend).await;
        let (user_id, _) = stack
            .user_with_profile("ada@example.com", &profile("Ada", "ada@example.com", "de-CH", None, true))
            .await;
        let (_, _) = stack
            .user_with_profile("bob@example.com", &profile("Bob", "bob@example.com", "en", None, true))
            .await;

        let mails = stack.mails(2, WITHIN).await;
        let ada = mails.iter().find(|m| m.header("to").contains("ada@example.com")).expect("Ada's mail");
        assert_eq!(ada.header("subject"), "Willkommen bei Tessera, Ada", "German template for de-CH");
        assert!(ada.body().contains("Hallo Ada"), "{}", ada.body());
        assert!(ada.header("from").contains("tests@tessera.test"));
        assert!(ada.header("message-id").ends_with("@tessera.notification>"));
        let bob = mails.iter().find(|m| m.header("to").contains("bob@example.com")).expect("Bob's mail");
        assert_eq!(bob.header("subject"), "Welcome to Tessera, Bob");

        // Nothing more arrives, and no SMS without a phone number.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(stack.smtp.messages().len(), 2, "exactly one welcome email each");
        assert!(stack.sms.requests().is_empty());
        assert!(!user_id.is_empty());
    }

    async fn an_sms_goes_out_when_the_profile_has_a_phone_and_allows_it(backend: Backend) {
        let stack = Stack::on(backend).await;
        stack
            .user_with_profile("ada@example.com", &profile("Ada", "ada@example.com", "fr", Some("+41791234567"), true))
            .await;
        stack
            .user_with_profile("bob@example.com", &profile("Bob", "bob@example.com", "en", Some("+41797654321"), false))
            .await;
        stack.mails(2, WITHIN).await;
        let sms = testkit::eventually(WITHIN, "Ada's SMS", || async {
            let requests = stack.sms.requests();
            (!requests.is_empty()).then_some(requests)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sms = stack.sms.requests().into_iter().chain(sms).collect::<Vec<_>>();
        let to_ada: Vec<&Value> = sms.iter().map(|r| &r.body).filter(|b| b["to"] == "+41791234567").collect();
        assert!(!to_ada.is_empty());
        assert!(to_ada[0]["body"].as_str().unwrap_or_default().starts_with("Bienvenue sur Tessera, Ada"));
        assert_eq!(sms[0].authorization.as_deref(), Some(SMS_AUTH), "the provider's auth header is sent");
        assert!(
            sms.iter().all(|r| r.body["to"] != "+41797654321"),
            "Bob turned SMS off: {sms:?}"
        );
    }
}

/// `user.created` carries the profile as created, and notification takes it as a lookup
/// made at the event's time: the welcome mail goes out, with the preferences the event
/// carried, without asking profile (here it cannot be asked at all).
#[tokio::test]
async fn a_welcome_mail_needs_no_profile_lookup() {
    let stack = Stack::start(Options {
        args: vec![
            // Nothing listens there: a lookup fails, and the job would wait for retries.
            "--profile-url".into(),
            "http://127.0.0.1:9".into(),
            "--preferences-ttl-secs".into(),
            "60".into(),
        ],
        ..Options::default()
    })
    .await;
    stack
        .user_with_profile(
            "ada@example.com",
            &profile("Ada", "ada@example.com", "en", Some("+41791234567"), false),
        )
        .await;
    let mails = stack.mails(1, WITHIN).await;
    assert_eq!(mails[0].header("subject"), "Welcome to Tessera, Ada");
    // Ada turned SMS off when she created her profile: the event's preferences count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        stack.sms.requests().is_empty(),
        "{:?}",
        stack.sms.requests()
    );
}
