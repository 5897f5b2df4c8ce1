//! The request id and W3C trace context of a request on the gateway's direct data path,
//! made straight into the text sent upstream and back (inline, not header values: those
//! are made only on hyper's paths): the kit's `RequestContext` formats them through
//! `String`s and `fmt` (several allocations and a `write!` per hex byte), which showed
//! in the gateway's profile.
//!
//! Same rules as the kit (`service_kit::request_context`, `service_kit::trace_context`):
//! a caller's `X-Request-Id` is kept when [`is_acceptable_request_id`] accepts it, else a
//! UUIDv7 is made; a valid version-00 `traceparent` is continued with a new span of the
//! gateway's own, else a new trace starts.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use service_kit::request_context::{TRACEPARENT, X_REQUEST_ID, is_acceptable_request_id};

use crate::proxy::ids::hex;
use crate::proxy::{MadeId, RequestId, RequestIds, TraceParent};

/// A request's ids: the header values for upstream and client, plus the raw trace ids
/// for the access log.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    pub(crate) upstream: RequestIds,
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
}

impl Ids {
    /// The ids for a request with `headers` that arrived at `started`.
    pub(crate) fn for_request(headers: &HeaderMap, started: Instant) -> Self {
        // Every random byte a request may need, drawn at once: one call into the
        // thread-local generator instead of three (bench/README.md, gateway, session 5).
        let mut random = [0_u8; 34];
        rand::fill(&mut random[..]);
        let (span_part, rest) = random.split_at(8);
        let (trace_part, uuid_part) = rest.split_at(16);
        // One pass over the request's few headers instead of two hashed lookups of
        // names that are usually absent.
        let (mut caller_id, mut caller_trace) = (None, None);
        for (name, value) in headers {
            if *name == X_REQUEST_ID {
                caller_id.get_or_insert(value);
            } else if *name == TRACEPARENT {
                caller_trace.get_or_insert(value);
            }
        }
        let caller_id = caller_id.filter(|v| v.to_str().is_ok_and(is_acceptable_request_id));
        let (trace_id, sampled) = caller_trace
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent)
            .unwrap_or_else(|| (nonzero(trace_part), true));
        let span_id: [u8; 8] = nonzero(span_part);
        let request_id = match caller_id {
            Some(id) => RequestId::Caller(id.clone()),
            None => RequestId::Made(MadeId::new(new_request_id(started, uuid_part))),
        };
        Self {
            upstream: RequestIds {
                request_id,
                trace: TraceParent {
                    trace_id,
                    parent_id: span_id,
                    sampled,
                },
            },
            trace_id,
            span_id,
        }
    }

    /// The request id as text (for the access log).
    pub(crate) fn request_id(&self) -> &str {
        self.upstream.request_id.as_str()
    }
}

/// Lowercase hex of `bytes`, written without `fmt` machinery per byte.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = [0_u8; 64];
        for chunk in self.0.chunks(32) {
            let len = encode(chunk, &mut out);
            f.write_str(std::str::from_utf8(&out[..len]).map_err(|_| std::fmt::Error)?)?;
        }
        Ok(())
    }
}

/// Writes the hex of `bytes` into `out`; returns the length written.
fn encode(bytes: &[u8], out: &mut [u8]) -> usize {
    hex(bytes, out);
    bytes.len() * 2
}

/// `random` as an id, unless it is all zero (the W3C spec forbids all-zero ids; then
/// fresh bytes are drawn).
fn nonzero<const N: usize>(random: &[u8]) -> [u8; N] {
    let mut id = [0_u8; N];
    id.copy_from_slice(&random[..N]);
    while id == [0; N] {
        rand::fill(&mut id[..]);
    }
    id
}

/// A fresh UUIDv7 (time-ordered) for a request that arrived at `started`, with the
/// random bits `random` (10 bytes) from the thread-local generator, not a `getrandom`
/// system call per request.
fn new_request_id(started: Instant, random: &[u8]) -> uuid::Uuid {
    let millis = u64::try_from(unix_time_at(started).as_millis()).unwrap_or(u64::MAX);
    let random: [u8; 10] = random[..10].try_into().expect("ten random bytes");
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// How long a thread's wall-clock reading stands in for a fresh one.
const WALL_CLOCK_REUSED_FOR: Duration = Duration::from_secs(1);

thread_local! {
    /// The thread's last wall-clock reading (since the Unix epoch) and the instant it
    /// stands for.
    static WALL_CLOCK: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// The wall-clock time (since the Unix epoch) at `at`, an instant the caller has just
/// read: the thread's last reading carried forward by the monotonic clock while it
/// is less than [`WALL_CLOCK_REUSED_FOR`] old, so that a request reads the clock once
/// for its latency and its id (a millisecond timestamp; a step of the system clock
/// shows within a second).
fn unix_time_at(at: Instant) -> Duration {
    WALL_CLOCK.with(|last| {
        if let Some((base, wall)) = last.get()
            && let Some(since) = at.checked_duration_since(base)
            && since < WALL_CLOCK_REUSED_FOR
        {
            return wall + since;
        }
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        last.set(Some((at, wall)));
        wall
    })
}

/// The trace id and sampled flag of a valid version-00 `traceparent`, as the kit parses
/// it.
fn parse_traceparent(header: &str) -> Option<([u8; 16], bool)> {
    TraceParent::parse(header).map(|trace| (trace.trace_id, trace.sampled))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use service_kit::TraceContext;

    use super::*;

    impl Ids {
        fn for_request_now(headers: &HeaderMap) -> Self {
            Self::for_request(headers, Instant::now())
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    #[test]
    fn a_caller_trace_is_continued_with_a_new_span_the_kit_can_parse() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ids = Ids::for_request_now(&headers(&[("traceparent", incoming)]));
        let sent = ids.upstream.trace.text();
        let sent = std::str::from_utf8(&sent).expect("text");
        let parsed = TraceContext::from_traceparent(sent).expect("valid traceparent");
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_span_id(), Some(Hex(&ids.span_id).to_string()));
        assert!(sent.ends_with("-01"));
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let ids = Ids::for_request_now(&headers(&[("traceparent", unsampled)]));
        assert!(ids.upstream.trace.text().ends_with(b"-00"));
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace_as_the_kit_does() {
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad}");
            let ids = Ids::for_request_now(&headers(&[("traceparent", bad)]));
            assert!(!Hex(&ids.trace_id).to_string().starts_with("4bf92f35"));
        }
    }

    #[test]
    fn a_plain_caller_request_id_is_kept_and_others_get_a_uuid_v7() {
        let ids = Ids::for_request_now(&headers(&[("x-request-id", "client-id-1")]));
        assert_eq!(ids.request_id(), "client-id-1");
        for odd in ["has space", &"a".repeat(129)] {
            let ids = Ids::for_request_now(&headers(&[("x-request-id", odd)]));
            let uuid = uuid::Uuid::parse_str(ids.request_id()).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 7);
        }
        let a = Ids::for_request_now(&HeaderMap::new());
        let b = Ids::for_request_now(&HeaderMap::new());
        assert_ne!(a.request_id(), b.request_id());
        assert_ne!(a.trace_id, b.trace_id);
    }

    #[test]
    fn made_request_ids_carry_the_wall_clock_time_without_reading_it_each_time() {
        let millis_now = || {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970");
            u64::try_from(since.as_millis()).expect("millis")
        };
        let timestamp = |ids: &Ids| {
            let uuid = uuid::Uuid::parse_str(ids.request_id()).expect("a UUID");
            let (seconds, nanos) = uuid.get_timestamp().expect("v7 has one").to_unix();
            seconds * 1000 + u64::from(nanos) / 1_000_000
        };
        let before = millis_now();
        let first = Instant::now();
        let ids = Ids::for_request(&HeaderMap::new(), first);
        assert!((before..=millis_now()).contains(&timestamp(&ids)));
        // Carried forward by the monotonic clock within the second...
        let later = first + Duration::from_millis(400);
        let carried = timestamp(&Ids::for_request(&HeaderMap::new(), later));
        assert_eq!(carried, timestamp(&ids) + 400, "{carried}");
        // ...and read again after it (an instant two seconds on, read as now).
        let fresh = timestamp(&Ids::for_request(
            &HeaderMap::new(),
            first + 2 * WALL_CLOCK_REUSED_FOR,
        ));
        assert!(fresh.abs_diff(millis_now()) < 1000, "{fresh}");
    }
}
