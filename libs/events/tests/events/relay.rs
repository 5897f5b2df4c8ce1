//! The relay to JetStream: only committed events, in order per aggregate, with their id
//! as `Nats-Msg-Id`, surviving a broker outage, and once with two relays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;
use service_kit::CancellationToken;
use tessera_events::{
    EventMetrics, JetStreamBus, OutboxMessage, PublishError, Relay, RelayConfig, Sink,
};

use testkit::PrivateNats;

use crate::support::{
    Backend, database, delete_stream, header, nats_url, on_both_backends, private_bus,
    stream_messages, thing,
};

/// `(aggregate, seq)` of each message's event, in stream order.
fn things(messages: &[async_nats::jetstream::message::StreamMessage]) -> Vec<(String, u64)> {
    messages
        .iter()
        .map(|m| {
            let event: Value = serde_json::from_slice(&m.payload).expect("json");
            (
                event["data"]["aggregate"]
                    .as_str()
                    .expect("aggregate")
                    .to_owned(),
                event["data"]["seq"].as_u64().expect("seq"),
            )
        })
        .collect()
}

/// Asserts that each aggregate's events appear with `seq` 0, 1, 2, ... in order.
fn assert_in_order_per_aggregate(seen: &[(String, u64)]) {
    let mut next: HashMap<&str, u64> = HashMap::new();
    for (aggregate, seq) in seen {
        let expected = next.entry(aggregate).or_insert(0);
        assert_eq!(*seq, *expected, "{aggregate} out of order in {seen:?}");
        *expected += 1;
    }
}

fn quick() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(50),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        ..RelayConfig::default()
    }
}

on_both_backends! {
    async fn an_event_written_in_a_rolled_back_transaction_is_never_published(backend: Backend) {
        let db = database(backend).await;
        let bus = private_bus(&nats_url()).await;
        let rolled_back = thing("a", 0);
        let committed = thing("b", 0);
        db.roll_back(std::slice::from_ref(&rolled_back)).await;
        db.commit(std::slice::from_ref(&committed)).await;

        let relay = Relay::new(db.pool.clone(), Arc::new(bus.clone()));
        let round = relay.relay_once().await.expect("round");
        assert_eq!((round.read, round.sent), (1, 1));
        assert_eq!(relay.relay_once().await.expect("round").read, 0);

        let messages = stream_messages(&bus).await;
        let ids: Vec<_> = messages.iter().map(|m| header(m, "Nats-Msg-Id")).collect();
        assert_eq!(ids, vec![Some(committed.id.as_str())]);
        assert_eq!(db.unsent().await, 0);
        delete_stream(&bus).await;
    }

    async fn events_arrive_in_order_per_aggregate_with_their_id_as_nats_msg_id(backend: Backend) {
        let db = database(backend).await;
        let bus = private_bus(&nats_url()).await;
        let mut written: Vec<OutboxMessage> = Vec::new();
        for seq in 0..30 {
            for aggregate in ["a", "b", "c"] {
                let message = thing(aggregate, seq);
                // One transaction per event, as services write them.
                db.commit(std::slice::from_ref(&message)).await;
                written.push(message);
            }
        }
        let metrics = EventMetrics::new();
        let relay = Relay::new(db.pool.clone(), Arc::new(bus.clone()))
            .with_config(RelayConfig { batch_size: 16, max_in_flight: 3, ..quick() })
            .with_metrics(metrics.clone());
        let stop = CancellationToken::new();
        let task = relay.spawn(stop.clone());
        testkit::eventually(Duration::from_secs(20), "every event relayed", || {
            let db = &db;
            async move { (db.unsent().await == 0).then_some(()) }
        })
        .await;
        stop.cancel();
        task.await.expect("relay task");

        let messages = stream_messages(&bus).await;
        assert_eq!(messages.len(), 90);
        assert_in_order_per_aggregate(&things(&messages));
        for message in &messages {
            let event: Value = serde_json::from_slice(&message.payload).expect("json");
            assert_eq!(header(message, "Nats-Msg-Id"), event["id"].as_str());
            assert_eq!(
                message.subject.as_str(),
                bus.subject("tessera.events.test.thing.happened")
            );
        }
        assert_eq!(metrics.relayed(), 90);
        assert_eq!(metrics.backlog(), 0);
        delete_stream(&bus).await;
    }

    async fn rows_wait_while_the_broker_is_down_and_all_go_out_once_it_returns(backend: Backend) {
        let db = database(backend).await;
        let mut nats = PrivateNats::start().await;
        let bus = private_bus(&nats.url()).await;
        bus.ensure_stream().await.expect("stream");
        nats.stop();

        let mut written = Vec::new();
        for seq in 0..10 {
            for aggregate in ["a", "b"] {
                let message = thing(aggregate, seq);
                db.commit(std::slice::from_ref(&message)).await;
                written.push(message);
            }
        }
        let metrics = EventMetrics::new();
        let relay = Relay::new(db.pool.clone(), Arc::new(bus.clone()))
            .with_config(quick())
            .with_metrics(metrics.clone());
        let stop = CancellationToken::new();
        let task = relay.spawn(stop.clone());
        testkit::eventually(Duration::from_secs(10), "a failed publish", || {
            let metrics = metrics.clone();
            async move { (metrics.relay_failures() > 0).then_some(()) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(db.unsent().await, 20, "rows must wait in the outbox while NATS is down");

        nats.resume().await;
        testkit::eventually(Duration::from_secs(30), "every event relayed after NATS returned", || {
            let db = &db;
            async move { (db.unsent().await == 0).then_some(()) }
        })
        .await;
        stop.cancel();
        task.await.expect("relay task");

        let messages = stream_messages(&bus).await;
        let mut ids: Vec<_> = messages.iter().filter_map(|m| header(m, "Nats-Msg-Id")).collect();
        ids.sort_unstable();
        let mut expected: Vec<_> = written.iter().map(|m| m.id.as_str()).collect();
        expected.sort_unstable();
        assert_eq!(ids, expected, "each event exactly once");
        assert_in_order_per_aggregate(&things(&messages));
    }
    async fn a_failed_publish_holds_back_later_events_of_its_aggregate_only(backend: Backend) {
        let db = database(backend).await;
        let bus = private_bus(&nats_url()).await;
        let written = [thing("a", 0), thing("a", 1), thing("a", 2), thing("b", 0), thing("b", 1)];
        db.commit(&written).await;
        let sink = Arc::new(FailOnce {
            bus: bus.clone(),
            victim: written[0].id.clone(),
            failed: Mutex::new(false),
        });
        let relay = Relay::new(db.pool.clone(), sink);
        let round = relay.relay_once().await.expect("round");
        assert_eq!((round.sent, round.failed), (2, 1), "b went out, a stopped at a0");
        assert_eq!(things(&stream_messages(&bus).await), vec![("b".to_owned(), 0), ("b".to_owned(), 1)]);
        assert_eq!(db.unsent().await, 3);

        let round = relay.relay_once().await.expect("round");
        assert_eq!(round.sent, 3);
        let seen = things(&stream_messages(&bus).await);
        assert_eq!(seen.len(), 5);
        assert_in_order_per_aggregate(&seen);
        delete_stream(&bus).await;
    }
}

/// Counts how often each event id is handed to JetStream (JetStream's own duplicate
/// window would hide double publishing).
#[derive(Debug)]
struct Counting {
    bus: JetStreamBus,
    publishes: Mutex<HashMap<String, u32>>,
}

impl Sink for Counting {
    fn publish<'a>(
        &'a self,
        message: &'a OutboxMessage,
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            *self
                .publishes
                .lock()
                .expect("lock")
                .entry(message.id.clone())
                .or_default() += 1;
            self.bus.publish(message).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_postgres_publish_each_row_once_and_in_order() {
    let db = database(Backend::Postgres).await;
    let bus = private_bus(&nats_url()).await;
    let counting = Arc::new(Counting {
        bus: bus.clone(),
        publishes: Mutex::new(HashMap::new()),
    });
    let stop = CancellationToken::new();
    let config = RelayConfig {
        batch_size: 7,
        max_in_flight: 4,
        ..quick()
    };
    let relays: Vec<_> = (0..2)
        .map(|_| {
            Relay::new(db.pool.clone(), counting.clone())
                .with_config(config.clone())
                .spawn(stop.clone())
        })
        .collect();
    let mut written = Vec::new();
    for seq in 0..25 {
        for aggregate in ["a", "b", "c", "d"] {
            let message = thing(aggregate, seq);
            db.commit(std::slice::from_ref(&message)).await;
            written.push(message);
        }
    }
    testkit::eventually(Duration::from_secs(30), "every event relayed", || {
        let db = &db;
        async move { (db.unsent().await == 0).then_some(()) }
    })
    .await;
    stop.cancel();
    for relay in relays {
        relay.await.expect("relay task");
    }
    let publishes = counting.publishes.lock().expect("lock").clone();
    assert_eq!(publishes.len(), written.len());
    assert!(
        publishes.values().all(|n| *n == 1),
        "some rows were published twice: {publishes:?}"
    );
    let messages = stream_messages(&bus).await;
    assert_eq!(messages.len(), written.len());
    assert_in_order_per_aggregate(&things(&messages));
    delete_stream(&bus).await;
}

/// Fails the first publish of one event id, as a broker hiccup would.
#[derive(Debug)]
struct FailOnce {
    bus: JetStreamBus,
    victim: String,
    failed: Mutex<bool>,
}

impl Sink for FailOnce {
    fn publish<'a>(
        &'a self,
        message: &'a OutboxMessage,
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            if message.id == self.victim {
                let mut failed = self.failed.lock().expect("lock");
                if !*failed {
                    *failed = true;
                    return Err(PublishError("broker hiccup".to_owned()));
                }
            }
            self.bus.publish(message).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_relay_leaves_an_aggregate_alone_while_another_relay_holds_its_earlier_row() {
    let db = database(Backend::Postgres).await;
    let bus = private_bus(&nats_url()).await;
    let written = [thing("a", 0), thing("a", 1), thing("b", 0)];
    for message in &written {
        db.commit(std::slice::from_ref(message)).await;
    }
    let service_kit::Pool::Postgres(pool) = &db.pool else {
        unreachable!("postgres")
    };
    // Another replica's relay is in the middle of publishing a0.
    let mut other = pool.begin().await.expect("begin");
    sqlx::query("SELECT id FROM outbox WHERE id = $1 FOR UPDATE")
        .bind(&written[0].id)
        .execute(&mut *other)
        .await
        .expect("lock a0");

    let relay = Relay::new(db.pool.clone(), Arc::new(bus.clone()));
    let round = relay.relay_once().await.expect("round");
    assert_eq!(round.sent, 1, "only b0: a1 must not overtake a0");
    assert_eq!(
        things(&stream_messages(&bus).await),
        vec![("b".to_owned(), 0)]
    );

    other.rollback().await.expect("release");
    let round = relay.relay_once().await.expect("round");
    assert_eq!(round.sent, 2);
    let seen = things(&stream_messages(&bus).await);
    assert_eq!(seen.len(), 3);
    assert_in_order_per_aggregate(&seen);
    delete_stream(&bus).await;
}
