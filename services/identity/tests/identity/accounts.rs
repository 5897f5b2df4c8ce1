//! Users: signup, login, the current user, refresh rotation, reuse detection, logout,
//! lockout — on SQLite and PostgreSQL.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use service_kit::ManualClock;

use crate::support::{Options, PASSWORD, TestIdentity, claims, header, on_both_backends};

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    let code = body
        .get("code")
        .or_else(|| body.get("error"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    (status, code.to_owned())
}

fn manual_clock() -> ManualClock {
    ManualClock::new(time::OffsetDateTime::now_utc())
}

on_both_backends! {
    async fn signup_then_login_gives_an_access_token_for_the_current_user(backend: Backend) {
        let app = TestIdentity::on(backend).await;
        let created = app.signup("  Ada@Example.COM ").await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let user: Value = created.json().await.expect("json");
        assert_eq!(user["email"], "ada@example.com");
        assert_eq!(user["roles"], json!(["user"]));
        assert!(user.get("password_hash").is_none());

        let tokens = app.login("ADA@example.com", PASSWORD).await;
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], 900);
        let access = tokens["access_token"].as_str().expect("access token");
        assert!(tokens["refresh_token"].as_str().is_some_and(|r| r.starts_with("tsr_")));
        let header = header(access);
        assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("at+jwt"), Some("EdDSA")));
        let claims = claims(access);
        assert_eq!(claims["sub"], user["id"]);
        assert_eq!(claims["iss"], crate::support::ISSUER);
        assert_eq!(claims["roles"], json!(["user"]));
        for claim in ["aud", "exp", "iat", "nbf", "jti"] {
            assert!(claims.get(claim).is_some(), "missing {claim}");
        }
        let me: Value = app.me(access).await.json().await.expect("json");
        assert_eq!(me["email"], "ada@example.com");
    }

    async fn a_wrong_password_and_an_unknown_email_get_the_same_answer(backend: Backend) {
        let app = TestIdentity::on(backend).await;
        assert_eq!(app.signup("bob@example.com").await.status(), StatusCode::CREATED);
        let wrong = app.post_json("/v1/login", &json!({ "email": "bob@example.com", "password": "not the password!" })).await;
        let unknown = app.post_json("/v1/login", &json!({ "email": "nobody@example.com", "password": PASSWORD })).await;
        let (wrong, unknown) = (error_code(wrong).await, error_code(unknown).await);
        assert_eq!(wrong, (StatusCode::UNAUTHORIZED, "invalid_credentials".to_owned()));
        assert_eq!(wrong, unknown);
    }

    async fn refresh_rotates_and_a_spent_token_presented_later_revokes_the_family(backend: Backend) {
        let clock = manual_clock();
        let app = TestIdentity::start(Options { backend, clock: Some(clock.clone()), ..Options::default() }).await;
        let first = app.user_tokens("cy@example.com").await;
        let r1 = first["refresh_token"].as_str().expect("r1").to_owned();

        let rotated = app.refresh(&r1).await;
        assert_eq!(rotated.status(), StatusCode::OK);
        assert_eq!(rotated.headers()["cache-control"], "no-store");
        let second: Value = rotated.json().await.expect("json");
        let r2 = second["refresh_token"].as_str().expect("r2").to_owned();
        assert_ne!(r1, r2);
        assert_eq!(app.me(second["access_token"].as_str().expect("at")).await.status(), StatusCode::OK);
        let issued: Vec<_> = app.outbox().await.into_iter().filter(|(s, _)| s == "tessera.audit.identity.token_issued").collect();
        assert_eq!(issued.len(), 1, "one audit record for the refreshed access token: {issued:?}");
        assert_eq!(issued[0].1["data"]["details"]["grant_type"], "refresh_token", "{issued:?}");
        assert_eq!(issued[0].1["data"]["details"]["jti"], claims(second["access_token"].as_str().expect("at"))["jti"]);

        // Outside the 30 s grace window, the spent token is a theft signal.
        clock.advance(Duration::from_secs(31));
        assert_eq!(error_code(app.refresh(&r1).await).await, (StatusCode::BAD_REQUEST, "invalid_grant".to_owned()));
        // ...and the whole family is gone, including the legitimate latest token.
        assert_eq!(error_code(app.refresh(&r2).await).await.1, "invalid_grant");
        let audit = app.outbox().await;
        assert!(audit.iter().any(|(s, _)| s == "tessera.audit.identity.refresh_reuse_detected"), "{audit:?}");
    }

    async fn a_refresh_that_failed_before_answering_can_be_retried_after_the_grace_window(backend: Backend) {
        let clock = manual_clock();
        let app = TestIdentity::start(Options { backend, clock: Some(clock.clone()), ..Options::default() }).await;
        let first = app.user_tokens("dee@example.com").await;
        let r1 = first["refresh_token"].as_str().expect("r1").to_owned();
        // The audit record of the refreshed token cannot be written for a moment.
        outbox_table(&app, true).await;
        let failed = app.refresh(&r1).await;
        assert!(failed.status().is_server_error(), "{}", failed.status());
        outbox_table(&app, false).await;
        // The client retries later than the reuse grace: the failed exchange did not spend
        // its token, so this is no reuse and the family lives.
        clock.advance(Duration::from_secs(31));
        let retried = app.refresh(&r1).await;
        assert_eq!(retried.status(), StatusCode::OK);
        let audit = app.outbox().await;
        assert!(!audit.iter().any(|(s, _)| s == "tessera.audit.identity.refresh_reuse_detected"), "{audit:?}");
    }

    async fn a_login_in_flight_when_shutdown_begins_is_still_answered(backend: Backend) {
        let app = TestIdentity::on(backend).await;
        assert_eq!(app.signup("eve@example.com").await.status(), StatusCode::CREATED);
        // The request is under way (its body half sent) when the shutdown begins: the
        // server drains it, and its audit record must still be written.
        let body = json!({ "email": "eve@example.com", "password": PASSWORD }).to_string().into_bytes();
        let (head, tail) = body.split_at(10);
        let (chunks, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
        chunks.send(Ok(head.to_vec())).await.expect("queue");
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (chunk, receiver))
        });
        let request = app
            .http
            .post(app.url("/v1/login"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send();
        let pending = tokio::spawn(request);
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
        chunks.send(Ok(tail.to_vec())).await.expect("queue");
        drop(chunks);
        let response = pending.await.expect("join").expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn a_concurrent_refresh_within_the_grace_window_gets_tokens_too(backend: Backend) {
        let clock = manual_clock();
        let app = TestIdentity::start(Options { backend, clock: Some(clock.clone()), ..Options::default() }).await;
        let r1 = app.user_tokens("di@example.com").await["refresh_token"].as_str().expect("r1").to_owned();
        let a: Value = app.refresh(&r1).await.json().await.expect("json");
        clock.advance(Duration::from_secs(5));
        let b = app.refresh(&r1).await;
        assert_eq!(b.status(), StatusCode::OK, "the second tab's refresh must not log the user out");
        let b: Value = b.json().await.expect("json");
        for tokens in [&a, &b] {
            let next = app.refresh(tokens["refresh_token"].as_str().expect("rt")).await;
            assert_eq!(next.status(), StatusCode::OK);
        }
    }

    async fn the_grace_window_covers_the_immediate_parent_only(backend: Backend) {
        let clock = manual_clock();
        let app = TestIdentity::start(Options { backend, clock: Some(clock.clone()), ..Options::default() }).await;
        let r1 = app.user_tokens("ed@example.com").await["refresh_token"].as_str().expect("r1").to_owned();
        let r2: Value = app.refresh(&r1).await.json().await.expect("json");
        let r3 = app.refresh(r2["refresh_token"].as_str().expect("r2")).await;
        assert_eq!(r3.status(), StatusCode::OK);
        let r3: Value = r3.json().await.expect("json");
        // r1 is a grandparent of the live token: reuse, even within seconds.
        assert_eq!(error_code(app.refresh(&r1).await).await.1, "invalid_grant");
        assert_eq!(error_code(app.refresh(r3["refresh_token"].as_str().expect("r3")).await).await.1, "invalid_grant");
    }

    async fn logout_revokes_the_refresh_family(backend: Backend) {
        let app = TestIdentity::on(backend).await;
        let tokens = app.user_tokens("flo@example.com").await;
        let refresh = tokens["refresh_token"].as_str().expect("rt");
        let out = app.post_json("/v1/logout", &json!({ "refresh_token": refresh })).await;
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        assert_eq!(error_code(app.refresh(refresh).await).await.1, "invalid_grant");
    }

    async fn parallel_wrong_passwords_cannot_exceed_the_lockout_limit(backend: Backend) {
        let app = TestIdentity::start(Options { backend, args: &["--login-max-failures", "3"], ..Options::default() }).await;
        assert_eq!(app.signup("gus@example.com").await.status(), StatusCode::CREATED);
        let wrong = json!({ "email": "gus@example.com", "password": "wrong wrong wrong" });
        let attempts = (0..12).map(|_| app.post_json("/v1/login", &wrong));
        let responses = futures_util::future::join_all(attempts).await;
        let statuses: Vec<StatusCode> = responses.iter().map(reqwest::Response::status).collect();
        let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
        let locked = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
        assert_eq!((checked, locked), (3, 9), "{statuses:?}");
        // Even the right password waits for the window to pass.
        let right = app.post_json("/v1/login", &json!({ "email": "gus@example.com", "password": PASSWORD })).await;
        assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    async fn attempts_refused_for_their_locked_address_do_not_use_up_the_accounts_attempts(backend: Backend) {
        // One attempt per account, twenty per address, in the window.
        let app = TestIdentity::start(Options { backend, args: &["--login-max-failures", "1", "--trust-forwarded-for"], ..Options::default() }).await;
        assert_eq!(app.signup("ida@example.com").await.status(), StatusCode::CREATED);
        let login_from = |address: &'static str, email: &str, password: &str| {
            app.http
                .post(app.url("/v1/login"))
                .header("x-forwarded-for", address)
                .json(&json!({ "email": email, "password": password }))
                .send()
        };
        // An address spends its attempts on other accounts...
        for i in 0..20 {
            let response = login_from("203.0.113.7", &format!("nobody{i}@example.com"), "wrong wrong wrong").await.expect("send");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        // ...then is refused on ida's account, whose password it never got to try.
        for _ in 0..3 {
            let response = login_from("203.0.113.7", "ida@example.com", "wrong wrong wrong").await.expect("send");
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        }
        // Ida, elsewhere, still has her attempt.
        let response = login_from("198.51.100.1", "ida@example.com", PASSWORD).await.expect("send");
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn signup_writes_the_registered_event_and_audit_record_to_the_outbox(backend: Backend) {
        let app = TestIdentity::on(backend).await;
        let user: Value = app.signup("hal@example.com").await.json().await.expect("json");
        let _ = app.login("hal@example.com", PASSWORD).await;
        let outbox = app.outbox().await;
        let registered = outbox
            .iter()
            .find(|(subject, _)| subject == "tessera.events.identity.user.registered")
            .map(|(_, event)| event)
            .expect("user.registered in the outbox");
        assert_eq!(registered["type"], "dev.tessera.identity.user.registered.v1");
        assert_eq!(registered["specversion"], "1.0");
        assert_eq!(registered["source"], "/tessera/identity");
        assert_eq!(registered["data"]["user_id"], user["id"]);
        let subjects: Vec<&str> = outbox.iter().map(|(s, _)| s.as_str()).collect();
        assert!(subjects.contains(&"tessera.audit.identity.signup"), "{subjects:?}");
        assert!(subjects.contains(&"tessera.audit.identity.login_succeeded"), "{subjects:?}");
        assert!(!outbox.iter().any(|(_, e)| e.to_string().contains(PASSWORD)), "a password reached the outbox");
    }
}

/// Takes identity's outbox table away (`away`) or puts it back: a fault the service cannot
/// tell from a database outage.
async fn outbox_table(app: &TestIdentity, away: bool) {
    let statement = if away {
        "ALTER TABLE outbox RENAME TO outbox_away"
    } else {
        "ALTER TABLE outbox_away RENAME TO outbox"
    };
    service_kit::with_pool!(&app.state.pool, |p| sqlx::query(statement)
        .execute(p)
        .await
        .map(drop))
    .expect("rename");
}
