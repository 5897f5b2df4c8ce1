//! Durable consumers on JetStream: a redelivered event has one effect, a handler that
//! keeps failing ends in the dead-letter subject with the reason, malformed events are
//! dead-lettered, unknown types are acknowledged and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use service_kit::CancellationToken;
use tessera_events::{
    ConsumerConfig, DEAD_LETTER_ATTEMPTS, DEAD_LETTER_REASON, Event, EventMetrics, HandlerError,
    JetStreamBus, OutboxMessage, Received, Relay, RelayConfig, Router, Sink,
};
use time::OffsetDateTime;

use testkit::PrivateNats;

use crate::support::{
    Backend, Other, Thing, apply_once, database, delete_stream, nats_url, on_both_backends,
    private_bus, thing,
};

const SUBJECT: &str = "tessera.events.test.thing.happened";

fn fast(name: &str, max_deliver: u32) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(name, &[SUBJECT]);
    config.max_deliver = max_deliver;
    config.backoff = vec![Duration::from_millis(100), Duration::from_millis(200)];
    config.ack_wait = Duration::from_secs(5);
    config
}

/// Publishes `message` straight to the bus (the relay's path without a database).
async fn publish(bus: &JetStreamBus, message: &OutboxMessage) {
    bus.publish(message).await.expect("publish");
}

/// Waits for the next dead letter of `consumer`.
async fn next_dead_letter(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(20), subscriber.next())
        .await
        .expect("a dead letter within 20 s")
        .expect("subscription open")
}

on_both_backends! {
    async fn a_redelivered_event_has_its_effect_once(backend: Backend) {
        let db = database(backend).await;
        let bus = private_bus(&nats_url()).await;
        let calls = Arc::new(AtomicU32::new(0));
        let pool = db.pool.clone();
        let counter = calls.clone();
        // The effect commits, then the handler fails (as if the ack were lost): the event
        // comes again, and the inbox must keep the effect from happening twice.
        let router = Router::new().on(move |received: Received<Thing>| {
            let (pool, counter) = (pool.clone(), counter.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                apply_once(&pool, "effects", &received.envelope.id)
                    .await
                    .map_err(HandlerError::retry)?;
                if received.attempt == 1 {
                    return Err(HandlerError::retry("connection reset after commit"));
                }
                Ok(())
            }
        });
        let metrics = EventMetrics::new();
        let stop = CancellationToken::new();
        bus.consume(fast("effects", 5), router, metrics.clone(), stop.clone());

        // Through the outbox and the relay, as a service publishes.
        let message = thing("a", 0);
        db.commit(std::slice::from_ref(&message)).await;
        Relay::new(db.pool.clone(), Arc::new(bus.clone())).relay_once().await.expect("relay");

        testkit::eventually(Duration::from_secs(20), "the redelivery handled", || {
            let metrics = metrics.clone();
            async move { (metrics.consumed("effects", "handled") == 1).then_some(()) }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "delivered twice");
        assert_eq!(metrics.consumed("effects", "retried"), 1);
        assert_eq!(db.effects("effects").await, vec![message.id.clone()], "one effect");
        stop.cancel();
        delete_stream(&bus).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_always_fails_is_dead_lettered_with_the_reason_after_max_attempts() {
    let bus = private_bus(&nats_url()).await;
    bus.ensure_stream().await.expect("stream");
    let mut dead = bus
        .client()
        .subscribe(bus.dead_letter_subject("mailer"))
        .await
        .expect("subscribe");
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let router = Router::new().on(move |_: Received<Thing>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::retry("smtp server refused: 451 try later"))
        }
    });
    let metrics = EventMetrics::new();
    let stop = CancellationToken::new();
    bus.consume(fast("mailer", 3), router, metrics.clone(), stop.clone());
    let message = thing("a", 0);
    publish(&bus, &message).await;

    let letter = next_dead_letter(&mut dead).await;
    let headers = letter.headers.clone().expect("headers");
    assert_eq!(
        headers
            .get(DEAD_LETTER_REASON)
            .map(async_nats::HeaderValue::as_str),
        Some("gave up after 3 attempts: smtp server refused: 451 try later")
    );
    assert_eq!(
        headers
            .get(DEAD_LETTER_ATTEMPTS)
            .map(async_nats::HeaderValue::as_str),
        Some("3")
    );
    assert_eq!(
        letter.payload.as_ref(),
        message.event.as_bytes(),
        "the original event"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    testkit::eventually(Duration::from_secs(5), "the dead letter counted", || {
        let metrics = metrics.clone();
        async move { (metrics.consumed("mailer", "dead_lettered") == 1).then_some(()) }
    })
    .await;
    // Acknowledged: no fourth attempt.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    stop.cancel();
    delete_stream(&bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_is_dead_lettered_with_the_reason() {
    let bus = private_bus(&nats_url()).await;
    bus.ensure_stream().await.expect("stream");
    let mut dead = bus
        .client()
        .subscribe(bus.dead_letter_subject("strict"))
        .await
        .expect("subscribe");
    let router = Router::new().on(|_: Received<Thing>| async { Ok(()) });
    let metrics = EventMetrics::new();
    let stop = CancellationToken::new();
    bus.consume(fast("strict", 5), router, metrics.clone(), stop.clone());
    bus.context()
        .publish(bus.subject(SUBJECT), "{not json".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let letter = next_dead_letter(&mut dead).await;
    let reason = letter
        .headers
        .as_ref()
        .and_then(|h| h.get(DEAD_LETTER_REASON))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert!(
        reason.starts_with("malformed event: not a CloudEvents 1.0 JSON event"),
        "{reason}"
    );

    // Well-formed envelope, `data` of the wrong shape: also malformed, never retried.
    let mut wrong = thing("a", 0);
    wrong.event = wrong.event.replace("\"seq\":0", "\"seq\":\"zero\"");
    publish(&bus, &wrong).await;
    let letter = next_dead_letter(&mut dead).await;
    let reason = letter
        .headers
        .as_ref()
        .and_then(|h| h.get(DEAD_LETTER_REASON))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert!(
        reason.starts_with("malformed event: data does not match"),
        "{reason}"
    );
    testkit::eventually(Duration::from_secs(5), "both dead letters counted", || {
        let metrics = metrics.clone();
        async move { (metrics.consumed("strict", "dead_lettered") == 2).then_some(()) }
    })
    .await;
    assert_eq!(metrics.consumed("strict", "retried"), 0);
    stop.cancel();
    delete_stream(&bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_type_is_acknowledged_and_counted() {
    let bus = private_bus(&nats_url()).await;
    let handled = Arc::new(AtomicU32::new(0));
    let counter = handled.clone();
    let router = Router::new().on(move |_: Received<Thing>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let metrics = EventMetrics::new();
    let stop = CancellationToken::new();
    bus.consume(fast("picky", 2), router, metrics.clone(), stop.clone());
    let unknown = OutboxMessage::new(&Other { note: "v9".into() }, OffsetDateTime::now_utc());
    assert_eq!(
        unknown.subject,
        Thing::nats_subject(),
        "same subject, other type"
    );
    publish(&bus, &unknown).await;
    publish(&bus, &thing("a", 0)).await;
    testkit::eventually(Duration::from_secs(20), "both events consumed", || {
        let metrics = metrics.clone();
        async move {
            (metrics.consumed("picky", "handled") == 1
                && metrics.consumed("picky", "unknown_type") == 1)
                .then_some(())
        }
    })
    .await;
    // Acknowledged, so nothing is pending or redelivered.
    let info = testkit::eventually(Duration::from_secs(5), "no pending acks", || {
        let bus = bus.clone();
        async move {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = bus
                .context()
                .get_consumer_from_stream("picky", &bus.config().stream)
                .await
                .ok()?;
            let info = consumer.info().await.ok()?.clone();
            (info.num_ack_pending == 0).then_some(info)
        }
    })
    .await;
    assert_eq!(info.num_pending, 0);
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(metrics.consumed("picky", "dead_lettered"), 0);
    stop.cancel();
    delete_stream(&bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_and_relay_resume_after_the_broker_returns_and_deliver_every_event_once() {
    let db = database(Backend::Sqlite).await;
    let mut nats = PrivateNats::start().await;
    let bus = private_bus(&nats.url()).await;
    let pool = db.pool.clone();
    let router = Router::new().on(move |received: Received<Thing>| {
        let pool = pool.clone();
        async move {
            apply_once(&pool, "resilient", &received.envelope.id)
                .await
                .map_err(HandlerError::retry)?;
            Ok(())
        }
    });
    let metrics = EventMetrics::new();
    let stop = CancellationToken::new();
    bus.consume(fast("resilient", 5), router, metrics.clone(), stop.clone());
    let relay = Relay::new(db.pool.clone(), Arc::new(bus.clone())).with_config(RelayConfig {
        poll_interval: Duration::from_millis(50),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        ..RelayConfig::default()
    });
    let wake = relay.handle();
    relay.spawn(stop.clone());

    let first = thing("a", 0);
    db.commit(std::slice::from_ref(&first)).await;
    wake.notify();
    testkit::eventually(Duration::from_secs(20), "the first event handled", || {
        let db = &db;
        async move { (db.effects("resilient").await.len() == 1).then_some(()) }
    })
    .await;

    nats.stop();
    let mut ids = vec![first.id.clone()];
    for seq in 1..=10 {
        let message = thing("a", seq);
        db.commit(std::slice::from_ref(&message)).await;
        ids.push(message.id);
    }
    wake.notify();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        db.unsent().await,
        10,
        "events wait in the outbox while NATS is down"
    );

    nats.resume().await;
    testkit::eventually(
        Duration::from_secs(40),
        "every event handled after NATS returned",
        || {
            let db = &db;
            async move { (db.effects("resilient").await.len() >= 11).then_some(()) }
        },
    )
    .await;
    ids.sort();
    assert_eq!(
        db.effects("resilient").await,
        ids,
        "each event's effect exactly once"
    );
    assert_eq!(db.unsent().await, 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_running_when_the_broker_goes_away_is_not_cut_off() {
    let mut nats = PrivateNats::start().await;
    let bus = private_bus(&nats.url()).await;
    let started = Arc::new(AtomicU32::new(0));
    let finished = Arc::new(AtomicU32::new(0));
    let (begun, done) = (started.clone(), finished.clone());
    // A handler whose effect is not in the inbox's transaction (an HTTP call, a mail):
    // once started it must be allowed to finish, not be dropped halfway.
    let router = Router::new().on(move |_: Received<Thing>| {
        let (begun, done) = (begun.clone(), done.clone());
        async move {
            begun.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(14)).await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let stop = CancellationToken::new();
    bus.consume(fast("steady", 5), router, EventMetrics::new(), stop.clone());
    publish(&bus, &thing("a", 0)).await;
    testkit::eventually(Duration::from_secs(20), "the handler started", || {
        let started = started.clone();
        async move { (started.load(Ordering::SeqCst) == 1).then_some(()) }
    })
    .await;
    // The pull stream reports the lost connection (missed heartbeats) while the handler
    // still runs.
    nats.stop();
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the handler that was running finished"
    );
    nats.resume().await;
    stop.cancel();
}

#[tokio::test]
async fn a_handler_slower_than_the_ack_wait_is_not_redelivered_while_it_runs() {
    let bus = private_bus(&nats_url()).await;
    let started = Arc::new(AtomicU32::new(0));
    let begun = started.clone();
    let router = Router::new().on(move |_: Received<Thing>| {
        let begun = begun.clone();
        async move {
            begun.fetch_add(1, Ordering::SeqCst);
            // Longer than the 5 s ack wait of `fast`.
            tokio::time::sleep(Duration::from_secs(8)).await;
            Ok(())
        }
    });
    let metrics = EventMetrics::new();
    let stop = CancellationToken::new();
    bus.consume(fast("patient", 5), router, metrics.clone(), stop.clone());
    publish(&bus, &thing("a", 0)).await;
    testkit::eventually(Duration::from_secs(30), "the event handled", || {
        let metrics = metrics.clone();
        async move { (metrics.consumed("patient", "handled") >= 1).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the server waited for the running handler instead of delivering again"
    );
    stop.cancel();
}
