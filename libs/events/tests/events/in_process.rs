//! The all-in-one binary's in-process bus: same outbox and inbox semantics as JetStream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use service_kit::CancellationToken;
use tessera_events::{
    ConsumerConfig, EventMetrics, HandlerError, InProcessBus, OutboxMessage, Received, Relay,
    RelayConfig, Router,
};
use time::OffsetDateTime;

use crate::support::{Backend, Other, Thing, apply_once, database, on_both_backends, thing};

const SUBJECT: &str = "tessera.events.test.thing.happened";

fn config(name: &str, max_deliver: u32) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(name, &["tessera.events.test.>"]);
    config.max_deliver = max_deliver;
    config.backoff = vec![Duration::from_millis(30)];
    config
}

fn quick() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(30),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

on_both_backends! {
    async fn the_in_process_bus_delivers_each_committed_event_once_to_every_subscriber(backend: Backend) {
        let db = database(backend).await;
        let bus = InProcessBus::new();
        let metrics = EventMetrics::new();

        let pool = db.pool.clone();
        let alpha = Router::new().on(move |received: Received<Thing>| {
            let pool = pool.clone();
            async move {
                apply_once(&pool, "alpha", &received.envelope.id).await.map_err(HandlerError::retry)?;
                Ok(())
            }
        });
        // beta refuses until it is healthy: the rows must stay unsent meanwhile.
        let healthy = Arc::new(AtomicBool::new(false));
        let beta_failures = Arc::new(AtomicU32::new(0));
        let (pool, ok, failures) = (db.pool.clone(), healthy.clone(), beta_failures.clone());
        let beta = Router::new().on(move |received: Received<Thing>| {
            let (pool, ok, failures) = (pool.clone(), ok.clone(), failures.clone());
            async move {
                if !ok.load(Ordering::SeqCst) {
                    failures.fetch_add(1, Ordering::SeqCst);
                    return Err(HandlerError::retry("not yet"));
                }
                apply_once(&pool, "beta", &received.envelope.id).await.map_err(HandlerError::retry)?;
                Ok(())
            }
        });
        bus.subscribe(config("alpha", 1000), alpha, metrics.clone());
        bus.subscribe(config("beta", 1000), beta, metrics.clone());

        let stop = CancellationToken::new();
        let relay = Relay::new(db.pool.clone(), Arc::new(bus.clone())).with_config(quick());
        let wake = relay.handle();
        let task = relay.spawn(stop.clone());

        db.roll_back(&[thing("gone", 0)]).await;
        let committed = [thing("a", 0), thing("a", 1), thing("b", 0)];
        db.commit(&committed).await;
        wake.notify();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(db.unsent().await, 3, "nothing is delivered before the bus starts");
        assert!(db.effects("alpha").await.is_empty());

        bus.start();
        testkit::eventually(Duration::from_secs(10), "beta refusing a few times", || {
            let failures = beta_failures.clone();
            async move { (failures.load(Ordering::SeqCst) >= 3).then_some(()) }
        })
        .await;
        assert_eq!(db.unsent().await, 3, "not sent while a subscriber refuses");
        // a1 waits behind a0 (order per aggregate); a0 and b0 reached alpha, once each.
        let mut first: Vec<String> = vec![committed[0].id.clone(), committed[2].id.clone()];
        first.sort();
        assert_eq!(db.effects("alpha").await, first, "alpha acted once despite redeliveries");
        let mut ids: Vec<String> = committed.iter().map(|m| m.id.clone()).collect();
        ids.sort();
        assert!(metrics.consumed("alpha", "handled") > 3, "alpha did get redeliveries");

        healthy.store(true, Ordering::SeqCst);
        testkit::eventually(Duration::from_secs(10), "every row sent", || {
            let db = &db;
            async move { (db.unsent().await == 0).then_some(()) }
        })
        .await;
        assert_eq!(db.effects("beta").await, ids);
        assert_eq!(db.effects("alpha").await, ids);
        assert!(bus.dead_letters().is_empty());
        stop.cancel();
        task.await.expect("relay");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_bus_dead_letters_failing_and_malformed_events_and_skips_unknown_types() {
    let db = database(Backend::Sqlite).await;
    let bus = InProcessBus::new();
    let metrics = EventMetrics::new();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let router = Router::new().on(move |received: Received<Thing>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            if received.event.aggregate == "doomed" {
                return Err(HandlerError::retry("provider down"));
            }
            Ok(())
        }
    });
    bus.subscribe(config("mailer", 3), router, metrics.clone());
    bus.start();

    let doomed = thing("doomed", 0);
    let fine = thing("fine", 0);
    let unknown = OutboxMessage::new(&Other { note: "x".into() }, OffsetDateTime::now_utc());
    let mut malformed = thing("m", 0);
    malformed.event = "{\"not\": \"an event\"}".to_owned();
    db.commit(&[doomed.clone(), fine, unknown, malformed.clone()])
        .await;
    let stop = CancellationToken::new();
    let task = Relay::new(db.pool.clone(), Arc::new(bus.clone()))
        .with_config(quick())
        .spawn(stop.clone());
    testkit::eventually(Duration::from_secs(10), "every row sent", || {
        let db = &db;
        async move { (db.unsent().await == 0).then_some(()) }
    })
    .await;
    stop.cancel();
    task.await.expect("relay");

    let letters = bus.dead_letters();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let doomed_letter = letters
        .iter()
        .find(|l| l.payload == doomed.event)
        .expect("doomed");
    assert_eq!(
        doomed_letter.reason,
        "gave up after 3 attempts: provider down"
    );
    assert_eq!(
        (doomed_letter.attempts, doomed_letter.consumer.as_str()),
        (3, "mailer")
    );
    assert_eq!(doomed_letter.subject, SUBJECT);
    let malformed_letter = letters
        .iter()
        .find(|l| l.payload == malformed.event)
        .expect("malformed");
    assert!(
        malformed_letter.reason.starts_with("malformed event:"),
        "{}",
        malformed_letter.reason
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "3 attempts for doomed, 1 for fine"
    );
    assert_eq!(metrics.consumed("mailer", "unknown_type"), 1);
    assert_eq!(metrics.consumed("mailer", "dead_lettered"), 2);
    assert_eq!(metrics.consumed("mailer", "handled"), 1);
}

#[tokio::test]
async fn a_subscriber_dead_letters_an_event_once_while_another_retries_it() {
    let db = database(Backend::Sqlite).await;
    let bus = InProcessBus::new();
    let metrics = EventMetrics::new();
    let alpha = Router::new()
        .on(|_: Received<Thing>| async { Err(HandlerError::reject("alpha never takes it")) });
    // beta fails three times before it handles the event: the row is relayed four times.
    let failures = Arc::new(AtomicU32::new(0));
    let counted = failures.clone();
    let beta = Router::new().on(move |_: Received<Thing>| {
        let counted = counted.clone();
        async move {
            if counted.fetch_add(1, Ordering::SeqCst) < 3 {
                return Err(HandlerError::retry("not yet"));
            }
            Ok(())
        }
    });
    bus.subscribe(config("alpha", 1000), alpha, metrics.clone());
    bus.subscribe(config("beta", 1000), beta, metrics.clone());
    bus.start();
    let stop = CancellationToken::new();
    let relay = Relay::new(db.pool.clone(), Arc::new(bus.clone())).with_config(quick());
    let wake = relay.handle();
    relay.spawn(stop.clone());
    db.commit(&[thing("a", 0)]).await;
    wake.notify();
    testkit::eventually(Duration::from_secs(10), "the event relayed", || {
        let db = &db;
        async move { (db.unsent().await == 0).then_some(()) }
    })
    .await;
    assert!(failures.load(Ordering::SeqCst) >= 4, "beta was retried");
    let dead: Vec<_> = bus
        .dead_letters()
        .into_iter()
        .filter(|d| d.consumer == "alpha")
        .collect();
    assert_eq!(dead.len(), 1, "alpha gave up once: {dead:?}");
    assert_eq!(metrics.consumed("alpha", "dead_lettered"), 1);
    stop.cancel();
}
