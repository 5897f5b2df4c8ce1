//! Throttling backends: the in-memory limiter under a manual clock and many tasks, and the
//! Redis limiter against a real Redis server (`TESSERA_TEST_REDIS_URL`) shared by two
//! limiter instances standing for two gateway replicas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use service_kit::{CancellationToken, ManualClock};
use tessera_gateway::ratelimit::{
    Decision, KEY_PREFIX, Limiter, LimiterError, LocalLimiter, RatePolicy, RedisLimiter,
    apply_headers,
};
use time::macros::datetime;

fn policy(name: &str, requests: u32, period_secs: u32, burst: u32) -> RatePolicy {
    let policy = RatePolicy {
        name: name.to_owned(),
        requests,
        period_secs,
        burst,
    };
    policy.validate().expect("test policy is valid");
    policy
}

fn manual_clock() -> ManualClock {
    ManualClock::new(datetime!(2026-01-01 00:00 UTC))
}

fn local(max_keys: usize, clock: &ManualClock) -> Arc<LocalLimiter> {
    LocalLimiter::new(max_keys, Arc::new(clock.clone()))
}

async fn allowed(limiter: &dyn Limiter, key: &str, policy: &RatePolicy, times: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..times {
        if limiter.check(key, policy).await.expect("decision").allowed {
            allowed += 1;
        }
    }
    allowed
}

// ---- LocalLimiter ---------------------------------------------------------------------

#[tokio::test]
async fn a_local_key_gets_its_burst_then_is_refused_then_recovers_after_one_interval() {
    let clock = manual_clock();
    let limiter = local(1_000, &clock);
    let api = policy("api", 10, 60, 3); // T = 6 s
    for remaining in [2, 1, 0] {
        let d = limiter.check("alice", &api).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, remaining);
    }
    let refused = limiter.check("alice", &api).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(6)));

    clock.advance(Duration::from_secs(5));
    assert!(!limiter.check("alice", &api).await.unwrap().allowed);
    clock.advance(Duration::from_secs(1));
    assert!(limiter.check("alice", &api).await.unwrap().allowed);
    assert!(!limiter.check("alice", &api).await.unwrap().allowed);
}

#[tokio::test]
async fn local_budgets_are_independent_per_key_and_per_policy() {
    let clock = manual_clock();
    let limiter = local(1_000, &clock);
    let api = policy("api", 1, 60, 2);
    let login = policy("login", 1, 60, 2);
    assert_eq!(allowed(&*limiter, "alice", &api, 5).await, 2);
    assert_eq!(allowed(&*limiter, "bob", &api, 5).await, 2);
    assert_eq!(allowed(&*limiter, "alice", &login, 5).await, 2);
    assert_eq!(limiter.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_local_checks_on_one_key_allow_exactly_the_burst() {
    let clock = manual_clock(); // never moves: nothing refills during the test
    let limiter = local(1_000, &clock);
    let burst = Arc::new(policy("burst", 1, 3_600, 50));
    let tasks = (0..64).map(|_| {
        let limiter = limiter.clone();
        let burst = burst.clone();
        tokio::spawn(async move {
            let mut allowed = 0usize;
            for _ in 0..100 {
                if limiter.check("shared", &burst).await.unwrap().allowed {
                    allowed += 1;
                }
                tokio::task::yield_now().await;
            }
            allowed
        })
    });
    let total: usize = join_all(tasks).await.into_iter().map(Result::unwrap).sum();
    assert_eq!(total, 50);
}

#[tokio::test]
async fn a_full_local_store_stays_bounded_refuses_new_keys_and_still_serves_known_ones() {
    let clock = manual_clock();
    let limiter = local(640, &clock);
    let api = policy("api", 1, 60, 2);
    let mut admitted = Vec::new();
    let mut refused = 0;
    for i in 0..5_000 {
        let key = format!("client-{i}");
        let d = limiter.check(&key, &api).await.unwrap();
        if d.allowed {
            admitted.push(key);
        } else {
            refused += 1;
            assert_eq!(d.remaining, 0);
            let wait = d
                .retry_after
                .expect("a refused new key is told when to retry");
            assert!(
                wait > Duration::ZERO && wait <= Duration::from_secs(60),
                "{wait:?}"
            );
        }
        assert!(limiter.len() <= 640);
    }
    // Every shard fills (5,000 keys over 64 shards of 10): the whole capacity is used.
    assert_eq!(limiter.len(), 640);
    assert_eq!(admitted.len(), 640);
    assert_eq!(refused, 5_000 - 640);
    assert_eq!(limiter.full_refusals(), 5_000 - 640);
    // Known keys keep their own budget: the second request of the burst passes.
    for key in &admitted[..20] {
        assert!(limiter.check(key, &api).await.unwrap().allowed, "{key}");
    }
}

#[tokio::test]
async fn a_full_local_store_admits_new_keys_again_once_old_entries_expire() {
    let clock = manual_clock();
    let limiter = local(64, &clock);
    let api = policy("api", 1, 60, 1);
    for i in 0..1_000 {
        limiter.check(&format!("old-{i}"), &api).await.unwrap();
    }
    assert_eq!(limiter.len(), 64);
    assert!(!limiter.check("newcomer", &api).await.unwrap().allowed);
    // A minute later every old budget is full again: those entries carry no information
    // and are evicted to make room, without waiting for a sweeper.
    clock.advance(Duration::from_secs(60));
    assert!(limiter.check("newcomer", &api).await.unwrap().allowed);
    assert!(limiter.len() <= 64);
}

#[tokio::test]
async fn the_sweeper_removes_expired_entries_and_keeps_live_ones() {
    let clock = manual_clock();
    let limiter = local(1_000, &clock);
    let fast = policy("fast", 1, 1, 1);
    let slow = policy("slow", 1, 3_600, 1);
    for i in 0..10 {
        limiter.check(&format!("f{i}"), &fast).await.unwrap();
    }
    limiter.check("s", &slow).await.unwrap();
    assert_eq!(limiter.len(), 11);

    let shutdown = CancellationToken::new();
    limiter.spawn_sweeper(Duration::from_millis(10), shutdown.clone());
    clock.advance(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while limiter.len() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        limiter.len(),
        1,
        "only the slow policy's entry is still live"
    );
    // The live entry kept its state: its budget is still spent.
    assert!(!limiter.check("s", &slow).await.unwrap().allowed);
    shutdown.cancel();
}

#[tokio::test]
async fn the_sweeper_stops_when_shut_down() {
    let clock = manual_clock();
    let limiter = local(1_000, &clock);
    let fast = policy("fast", 1, 1, 1);
    let shutdown = CancellationToken::new();
    limiter.spawn_sweeper(Duration::from_millis(10), shutdown.clone());
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    limiter.check("k", &fast).await.unwrap();
    clock.advance(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(limiter.len(), 1);
    assert_eq!(limiter.sweep(), 1);
    assert!(limiter.is_empty());
}

#[tokio::test]
async fn an_unenforceable_policy_is_an_error_so_the_gateway_fails_open() {
    let clock = manual_clock();
    let limiter = local(10, &clock);
    let broken = RatePolicy {
        name: "broken".to_owned(),
        requests: 0,
        period_secs: 60,
        burst: 1,
    };
    let err = limiter.check("k", &broken).await.unwrap_err();
    assert!(matches!(err, LimiterError::InvalidPolicy { ref name, .. } if name == "broken"));
}

// ---- RedisLimiter against a real Redis ------------------------------------------------

fn redis_url() -> String {
    std::env::var("TESSERA_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "TESSERA_TEST_REDIS_URL is not set: these tests need a real Redis, e.g. \
             `redis-server --port 6379 --save '' --appendonly no --daemonize yes` and \
             TESSERA_TEST_REDIS_URL=redis://127.0.0.1:6379/"
        )
    })
}

/// A policy name no other test (nor an earlier run) uses, so budgets never collide.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn replica() -> RedisLimiter {
    RedisLimiter::connect(&redis_url())
        .await
        .expect("connect to the test Redis")
}

async fn redis_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test Redis")
}

#[tokio::test]
async fn two_redis_replicas_share_one_budget() {
    let (a, b) = (replica().await, replica().await);
    let shared = policy(&unique("shared"), 10, 60, 10);
    let checks = (0..50).map(|i| {
        let limiter = if i % 2 == 0 { &a } else { &b };
        limiter.check("client", &shared)
    });
    let decisions: Vec<Decision> = join_all(checks)
        .await
        .into_iter()
        .map(|d| d.expect("decision"))
        .collect();
    let mut remaining: Vec<u32> = decisions
        .iter()
        .filter(|d| d.allowed)
        .map(|d| d.remaining)
        .collect();
    remaining.sort_unstable();
    // Exactly the burst passed, and each allowed request saw a distinct budget state.
    assert_eq!(remaining, (0..10).collect::<Vec<_>>());
    assert!(decisions.iter().all(|d| d.limit == 10));
}

#[tokio::test]
async fn a_refused_redis_decision_carries_retry_after_and_recovers_after_it() {
    let limiter = replica().await;
    let p = policy(&unique("retry"), 10, 1, 1); // T = 100 ms
    assert!(limiter.check("k", &p).await.unwrap().allowed);
    let refused = limiter.check("k", &p).await.unwrap();
    assert!(!refused.allowed);
    let wait = refused.retry_after.expect("retry_after when refused");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(100),
        "{wait:?}"
    );

    let mut headers = http::HeaderMap::new();
    apply_headers(&mut headers, &p, &refused);
    assert_eq!(headers[http::header::RETRY_AFTER], "1");

    tokio::time::sleep(wait + Duration::from_millis(5)).await;
    assert!(limiter.check("k", &p).await.unwrap().allowed);
}

#[tokio::test]
async fn redis_budget_keys_expire_when_the_budget_is_full_again() {
    let limiter = replica().await;
    let mut conn = redis_conn().await;
    // T = 1 s: each step below must land within one interval of the first request, which
    // a 100 ms interval did not leave a loaded machine.
    let p = policy(&unique("ttl"), 1, 1, 2);
    let key = format!("{KEY_PREFIX}{}:k", p.name);
    assert!(key.starts_with("tessera:rl:"));

    limiter.check("k", &p).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=1_000).contains(&ttl),
        "TTL after one request: {ttl} ms"
    );
    // The value is the TAT in microseconds on Redis's own clock: one interval ahead.
    let tat: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let tat: u64 = tat.parse().expect("TAT is an integer");
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let now = secs * 1_000_000 + micros;
    assert!(
        tat > now && tat <= now + 1_000_000,
        "TAT {tat} vs Redis now {now}"
    );
    limiter.check("k", &p).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1_001..=2_000).contains(&ttl),
        "TTL after two requests: {ttl} ms"
    );

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn the_redis_limiter_reloads_its_script_after_redis_forgets_it() {
    let limiter = replica().await;
    let mut conn = redis_conn().await;
    let p = policy(&unique("noscript"), 1, 60, 3);
    assert_eq!(limiter.check("k", &p).await.unwrap().remaining, 2);
    // As after a Redis restart: the script cache is empty, the budget (here) is not.
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(limiter.check("k", &p).await.unwrap().remaining, 1);
}

#[tokio::test]
async fn a_dead_redis_is_an_error_within_bounded_time() {
    let started = Instant::now();
    let err = RedisLimiter::connect("redis://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, LimiterError::Connect(_) | LimiterError::Timeout(_)),
        "{err}"
    );

    // A lazily connected limiter still answers every check with an error, promptly.
    let limiter = RedisLimiter::connect_lazy("redis://127.0.0.1:1/").unwrap();
    let p = policy("dead", 1, 1, 1);
    for _ in 0..3 {
        let started = Instant::now();
        assert!(limiter.check("k", &p).await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_redis_that_never_answers_is_an_error_within_the_check_timeout() {
    // Accepts connections and reads nothing, like a hung server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let started = Instant::now();
    assert!(RedisLimiter::connect(&url).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let limiter = RedisLimiter::connect_lazy(&url)
        .unwrap()
        .with_check_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let err = limiter
        .check("k", &policy("hung", 1, 1, 1))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, LimiterError::Timeout(_)), "{err}");
}
