//! The Redis limiter: GCRA in one Lua script, so every gateway replica takes from the same
//! budget, with Redis's own clock so replicas with skewed clocks agree.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, Script, ServerErrorKind};

use super::gcra::{Admission, Gcra, MICROS};
use super::{Decision, Limiter, LimiterError, RatePolicy};

/// Prefix of every key the limiter writes: `tessera:rl:<policy name>:<key>`. Policy names
/// contain no `:`, so two (policy, key) pairs never share a Redis key.
pub const KEY_PREFIX: &str = "tessera:rl:";

/// Longest wait for the first connection (and script upload) in [`RedisLimiter::connect`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Per TCP connection attempt, including reconnections in the background.
const CONNECTION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Redis-side cap on one command, so a server that never answers does not pile up
/// requests in the multiplexed connection once checks have given up on them.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnection attempts per outage burst (50 ms, 100 ms, ... with jitter); each later
/// check that finds the connection broken starts a new round.
const RECONNECT_RETRIES: usize = 2;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
/// Default for [`RedisLimiter::with_check_timeout`]: Redis answers in well under a
/// millisecond on a LAN, so 200 ms means it is down or drowning; the request then goes
/// through unthrottled (fail open) rather than waiting longer.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_millis(200);

/// GCRA on one key, atomically (a script runs alone on the server).
///
/// KEYS[1]: the key. ARGV[1]: emission interval T, ARGV[2]: window (burst × T), both in
/// microseconds. Returns {allowed (0/1), backlog (TAT − now, µs, after the request)}; the
/// comparison is exactly `Gcra::admit`. Time is the server's `TIME`, never the caller's
/// (calling `TIME` before a write needs Redis ≥ 5, which replicates script effects). The
/// TAT (µs since 1970) is written with `%d` so it stays a plain integer string whatever
/// number formatting Redis applies to Lua arguments, and it expires (PX) when the budget
/// is full again, so idle keys cost nothing.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local backlog = math.max(tat - now, 0)
local after = backlog + interval
if after > window then
  return {0, backlog}
end
redis.call('SET', KEYS[1], string.format('%d', now + after),
  'PX', string.format('%d', math.ceil(after / 1000)))
return {1, after}
";

/// The Redis-backed GCRA limiter: several gateway replicas share one budget per
/// (policy, key). Cheap to clone; clones share the connection.
///
/// The connection is a [`ConnectionManager`]: one multiplexed connection that reconnects
/// in the background after a failure. Every check is bounded by the check timeout
/// (default 200 ms); on a timeout or a Redis error the check returns a [`LimiterError`]
/// and the gateway fails open.
#[derive(Clone)]
pub struct RedisLimiter {
    manager: ConnectionManager,
    script: Script,
    check_timeout: Duration,
}

impl RedisLimiter {
    /// Connects to `url` (`redis://[user:password@]host:port/db`, or `rediss://`) and
    /// uploads the script, failing within about 2 s if Redis is unreachable, does not
    /// answer, or refuses scripts.
    pub async fn connect(url: &str) -> Result<Self, LimiterError> {
        let client = Client::open(url).map_err(LimiterError::InvalidUrl)?;
        let script = Script::new(GCRA_SCRIPT);
        let connecting = async {
            let mut manager = ConnectionManager::new_with_config(client, manager_config())
                .await
                .map_err(LimiterError::Connect)?;
            script
                .prepare_invoke()
                .load_async(&mut manager)
                .await
                .map_err(LimiterError::Connect)?;
            Ok(manager)
        };
        let manager = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| LimiterError::Timeout(CONNECT_TIMEOUT))??;
        Ok(Self {
            manager,
            script,
            check_timeout: DEFAULT_CHECK_TIMEOUT,
        })
    }

    /// Like [`connect`](Self::connect) but connects on the first check: only a malformed
    /// URL is an error. For a gateway that must start (and fail open) while Redis is down.
    /// Must be called within a Tokio runtime.
    pub fn connect_lazy(url: &str) -> Result<Self, LimiterError> {
        let client = Client::open(url).map_err(LimiterError::InvalidUrl)?;
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config())
            .map_err(LimiterError::Connect)?;
        Ok(Self {
            manager,
            script: Script::new(GCRA_SCRIPT),
            check_timeout: DEFAULT_CHECK_TIMEOUT,
        })
    }

    /// Sets how long one check may wait for Redis before failing (default 200 ms).
    #[must_use]
    pub fn with_check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    async fn decide(&self, key: &str, policy: &RatePolicy) -> Result<Decision, LimiterError> {
        let gcra = Gcra::new(policy, MICROS).map_err(|reason| LimiterError::InvalidPolicy {
            name: policy.name.clone(),
            reason,
        })?;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(redis_key(&policy.name, key))
            .arg(gcra.interval())
            .arg(gcra.window());
        let mut conn = self.manager.clone();
        let call = async {
            let mut reply = invocation.invoke_async::<(i64, i64)>(&mut conn).await;
            // `invoke_async` reloads the script once after NOSCRIPT (Redis restarted or
            // flushed); a flush racing that reload earns one more try.
            if reply.as_ref().is_err_and(is_noscript) {
                reply = invocation.invoke_async(&mut conn).await;
            }
            reply
        };
        let (allowed, backlog) = tokio::time::timeout(self.check_timeout, call)
            .await
            .map_err(|_| LimiterError::Timeout(self.check_timeout))?
            .map_err(LimiterError::Redis)?;
        let admission = match (allowed, u64::try_from(backlog)) {
            (0 | 1, Ok(backlog)) => Admission {
                allowed: allowed == 1,
                backlog,
            },
            _ => {
                return Err(LimiterError::UnexpectedReply(format!(
                    "{{{allowed}, {backlog}}}"
                )));
            }
        };
        Ok(gcra.decision(admission))
    }
}

impl Limiter for RedisLimiter {
    fn check<'a>(
        &'a self,
        key: &'a str,
        policy: &'a RatePolicy,
    ) -> Pin<Box<dyn Future<Output = Result<Decision, LimiterError>> + Send + 'a>> {
        Box::pin(self.decide(key, policy))
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection is left out: its details include the URL and its password.
        f.debug_struct("RedisLimiter")
            .field("check_timeout", &self.check_timeout)
            .finish_non_exhaustive()
    }
}

/// The Redis key of `key`'s budget under the policy named `policy`.
fn redis_key(policy: &str, key: &str) -> String {
    format!("{KEY_PREFIX}{policy}:{key}")
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_ATTEMPT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_min_delay(RECONNECT_MIN_DELAY)
        .set_max_delay(RECONNECT_MAX_DELAY)
}

fn is_noscript(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_with_the_policy_name() {
        assert_eq!(redis_key("api", "user:42"), "tessera:rl:api:user:42");
    }

    #[tokio::test]
    async fn a_malformed_url_is_refused_before_any_connection() {
        for url in ["http://localhost:6379", "not a url"] {
            let err = RedisLimiter::connect(url).await.unwrap_err();
            assert!(matches!(err, LimiterError::InvalidUrl(_)), "{url}: {err}");
            let err = RedisLimiter::connect_lazy(url).unwrap_err();
            assert!(matches!(err, LimiterError::InvalidUrl(_)), "{url}: {err}");
        }
    }
}
