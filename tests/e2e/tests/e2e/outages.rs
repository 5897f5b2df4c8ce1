//! Infrastructure outages the platform must ride out (issue #9): NATS down during
//! signups (the outboxes keep every event, the inbox keeps every welcome email single),
//! logging down (services keep answering; shipping drops and counts, then resumes) and
//! PostgreSQL crashed and restarted (services recover by themselves; nothing
//! acknowledged is lost). Each outage lasts 30 s; the tests run in parallel.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tessera_e2e::{Client, Options, Platform, Postgres, Service, User, unique_email};

/// How long each outage lasts (issue #9).
const OUTAGE: Duration = Duration::from_secs(30);
/// How long the platform may take to catch up once the outage ends.
const CATCH_UP: Duration = Duration::from_secs(120);

/// A client for the `n`-th user: its own loopback address, so the gateway's login
/// limit (10 a minute per address) does not throttle a test that signs up many users.
fn client_for(platform: &Platform, n: u16) -> Client {
    Client::from_address(platform.gateway(), Client::nth_address(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_stopped_30_s_during_signups_every_new_profile_gets_exactly_one_welcome_email() {
    let platform = Platform::start(Options {
        notification: true,
        ..Options::default()
    })
    .await;
    let mut users: Vec<User> = Vec::new();
    let mut n = 0u16;
    for _ in 0..3 {
        users.push(
            client_for(&platform, n)
                .new_user("before", "en")
                .await
                .expect("a user before the outage"),
        );
        n += 1;
    }

    platform.stop_nats().await;
    let down = Instant::now();
    while down.elapsed() < OUTAGE {
        // Signup, login and profile creation need no broker: the events wait in the
        // identity and profile outboxes.
        let user = client_for(&platform, n)
            .new_user("during", "de")
            .await
            .unwrap_or_else(|f| panic!("user {n}, {:?} into the outage: {f}", down.elapsed()));
        users.push(user);
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The outage was real: nothing signed up during it has been welcomed yet.
    let smtp = platform.smtp();
    for user in &users[3..] {
        assert!(
            smtp.messages_to(&user.email).is_empty(),
            "{} was welcomed while NATS was down",
            user.email
        );
    }
    platform.resume_nats().await;
    for _ in 0..3 {
        users.push(
            client_for(&platform, n)
                .new_user("after", "fr")
                .await
                .expect("a user after the outage"),
        );
        n += 1;
    }

    testkit::eventually(CATCH_UP, "a welcome email for every user", || async {
        users
            .iter()
            .all(|u| !smtp.messages_to(&u.email).is_empty())
            .then_some(())
    })
    .await;
    // Quiet: nothing left on the consumer and every mail accounted for by a delivery.
    platform.wait_notification_settled(CATCH_UP).await;
    for user in &users {
        let mails = smtp.messages_to(&user.email);
        assert_eq!(mails.len(), 1, "{}: {mails:?}", user.email);
    }
    assert_eq!(smtp.messages().len(), users.len(), "no mail to anyone else");
    // About 20 on an idle machine (a signup, then 500 ms); a loaded one may manage half
    // as many signups in the 30 s, every one of which was checked above.
    assert!(users.len() >= 3 + 5 + 3, "{} users", users.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_logging_stopped_30_s_every_service_keeps_answering_counts_its_drops_and_ships_again()
{
    let admin_email = unique_email("admin");
    let platform = Platform::start(Options {
        logging: true,
        notification: true,
        bootstrap_admins: vec![admin_email.clone()],
        // Small enough that 30 s of this traffic overflows it.
        log_buffer_records: Some(100),
        ..Options::default()
    })
    .await;
    let admin_client = client_for(&platform, 0);
    admin_client
        .signup(&admin_email)
        .await
        .expect("admin signup");
    let (_, admin) = admin_client.login(&admin_email).await.expect("admin login");
    let user = client_for(&platform, 1)
        .new_user("steady", "en")
        .await
        .expect("a user");
    let client = Client::new(platform.gateway());
    // Milliseconds normally; a shipper blocking on the dead logging service would hold
    // requests for its whole outage. 5 s leaves a loaded machine room for a stall.
    let slowest_allowed = Duration::from_secs(5);

    platform.stop(Service::Logging);
    let down = Instant::now();
    let mut n = 2u16;
    let mut requests = 0u32;
    let mut newcomers = Vec::new();
    // By the clock rather than every n requests, so a slow machine still signs up several.
    let newcomer_every = Duration::from_secs(5);
    let mut next_newcomer = newcomer_every;
    while down.elapsed() < OUTAGE {
        for path in ["/v1/me", "/profile/v1/profiles/me"] {
            let started = Instant::now();
            client
                .get(path, &user.tokens.access)
                .await
                .unwrap_or_else(|f| panic!("{path}, {:?} into the outage: {f}", down.elapsed()));
            assert!(
                started.elapsed() < slowest_allowed,
                "{path} took {:?} while logging was down",
                started.elapsed()
            );
            requests += 1;
        }
        // A new user now and then: identity and profile write (and log) too, and
        // notification has welcome emails to send.
        if down.elapsed() >= next_newcomer {
            next_newcomer += newcomer_every;
            let newcomer = client_for(&platform, n)
                .new_user("during", "en")
                .await
                .unwrap_or_else(|f| panic!("new user, {:?} into the outage: {f}", down.elapsed()));
            newcomers.push(newcomer.email);
            n += 1;
        }
    }
    assert!(newcomers.len() >= 3, "{newcomers:?}");
    let smtp = platform.smtp();
    testkit::eventually(
        CATCH_UP,
        "notification to welcome every newcomer",
        || async {
            newcomers
                .iter()
                .all(|email| !smtp.messages_to(email).is_empty())
                .then_some(())
        },
    )
    .await;
    for service in [Service::Gateway, Service::Identity, Service::Profile] {
        let dropped = platform
            .metric(service, "tessera_log_shipping_dropped_total", &[])
            .await;
        assert!(
            dropped.is_some_and(|d| d > 0.0),
            "{} counts the records it dropped: {dropped:?} after {requests} requests",
            service.name()
        );
    }

    restart_logging_and_find_a_request(&platform, &client, &user, &admin.access).await;
}

/// Restarts logging after its outage, waits until the gateway and profile ship again,
/// then finds the records of a new request from both.
async fn restart_logging_and_find_a_request(
    platform: &Platform,
    client: &Client,
    user: &User,
    admin: &str,
) {
    // Each shipper resumes after its backoff (up to 30 s). Only then the request whose
    // records are looked for: this test's buffers hold 100 records, and the gateway logs
    // every poll below, so a record made while its shipper still waited could be pushed
    // out (drop-oldest, as designed) before it was sent. Counted before the restart: the
    // counters stand still while logging is down, and the buffers are full.
    let shippers = [Service::Gateway, Service::Profile];
    let shipped = |service| platform.metric(service, "tessera_log_shipping_shipped_total", &[]);
    let mut before = Vec::new();
    for service in shippers {
        before.push(shipped(service).await.unwrap_or(0.0));
    }
    platform.restart(Service::Logging).await;
    for (service, before) in shippers.into_iter().zip(before) {
        let what = format!("{} to ship again", service.name());
        testkit::eventually_every(Duration::from_millis(250), CATCH_UP, &what, || async {
            (shipped(service).await? > before).then_some(())
        })
        .await;
    }
    let after = client
        .get("/profile/v1/profiles/me", &user.tokens.access)
        .await
        .expect("a request after the outage");
    // Polled slowly for the same reason: 2 gateway records a second leave the buffer
    // 50 s of slack.
    let poll = Duration::from_millis(500);
    testkit::eventually_every(
        poll,
        CATCH_UP,
        "the request's records from gateway and profile",
        || async {
            let records = client.log_records(admin, &after.request_id).await.ok()?;
            let from = |s: Service| records.iter().any(|r| r["service"] == s.name());
            (from(Service::Gateway) && from(Service::Profile)).then_some(())
        },
    )
    .await;
}

/// What a client was told was stored.
struct Acknowledged {
    user: User,
    display_name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_crashed_for_30_s_services_recover_by_themselves_and_lose_no_acknowledged_write()
 {
    let platform = Platform::start(Options {
        postgres: Postgres::Private,
        logging: true,
        notification: true,
        ..Options::default()
    })
    .await;
    let mut acknowledged = Vec::new();
    let mut n = 0u16;
    let attempt = |n: u16| {
        let client = client_for(&platform, n);
        async move {
            let user = client.new_user("pg", "en").await?;
            let display_name = format!("renamed {n}");
            let request = client
                .http()
                .patch(client.url("/profile/v1/profiles/me"))
                .bearer_auth(&user.tokens.access)
                .json(&json!({ "display_name": display_name }));
            client.call(request, "rename", StatusCode::OK).await?;
            Ok::<_, tessera_e2e::Failure>(Acknowledged { user, display_name })
        }
    };
    for _ in 0..3 {
        acknowledged.push(attempt(n).await.expect("writes before the crash"));
        n += 1;
    }

    platform.stop_postgres().await;
    let down = Instant::now();
    let mut refused = Vec::new();
    while down.elapsed() < OUTAGE {
        let started = Instant::now();
        match attempt(n).await {
            // A write that completed before the crash took hold (or after) must last.
            Ok(ack) => acknowledged.push(ack),
            Err(failure) => {
                assert!(
                    failure
                        .status
                        .is_some_and(|s| s == StatusCode::SERVICE_UNAVAILABLE
                            || s == StatusCode::BAD_GATEWAY),
                    "a write while PostgreSQL is down is refused as retryable, not {failure}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "refused after {:?}",
                    started.elapsed()
                );
                refused.push(failure);
            }
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    platform.resume_postgres().await;
    assert!(!refused.is_empty(), "writes were refused during the outage");

    // Recovered without a restart: same processes, ready again, writes work.
    let recovered = testkit::eventually(CATCH_UP, "a full signup to work again", || {
        let next = attempt(n);
        async move { next.await.ok() }
    })
    .await;
    acknowledged.push(recovered);
    for service in Service::ALL {
        assert!(
            platform.still_running(service),
            "{} kept running",
            service.name()
        );
        platform.wait_ready(service).await;
    }
    for ack in &acknowledged {
        let client = Client::new(platform.gateway());
        let profile = client
            .get("/profile/v1/profiles/me", &ack.user.tokens.access)
            .await
            .unwrap_or_else(|f| panic!("{}'s profile: {f}", ack.user.email));
        assert_eq!(profile.body["display_name"], ack.display_name.as_str());
    }
    // Identity kept every acknowledged account: each still logs in (own address each).
    for (i, ack) in acknowledged.iter().enumerate() {
        let address = 1000 + u16::try_from(i).expect("few users");
        client_for(&platform, address)
            .login(&ack.user.email)
            .await
            .unwrap_or_else(|f| panic!("{} logs in after the crash: {f}", ack.user.email));
    }
    // Notification recovered too: the newest user gets the welcome email.
    let newest = &acknowledged.last().expect("users").user.email;
    testkit::eventually(CATCH_UP, "the welcome email after recovery", || async {
        (!platform.smtp().messages_to(newest).is_empty()).then_some(())
    })
    .await;
}
