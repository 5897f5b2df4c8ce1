//! The rate-limit response headers: `RateLimit-Policy` and `RateLimit` of
//! draft-ietf-httpapi-ratelimit-headers (structured-field lists), and `Retry-After`.

use std::fmt::Write as _;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{Decision, RatePolicy};

/// `RateLimit-Policy: "name";q=<requests>;w=<period seconds>`.
pub(crate) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit: "name";r=<remaining>;t=<seconds until the budget is full>`.
pub(crate) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Writes the headers for one policy's decision into a response.
///
/// The two `RateLimit` fields are structured-field *lists*, so they are appended: a request
/// checked under a route policy and the global policy reports both, and clients read the
/// field lines as one list. `q` and `w` give the steady rate (`requests` per `period_secs`);
/// `r` counts requests left in the burst and `t` the whole seconds (rounded up) until the
/// budget is full again. When refused, `Retry-After` is set in whole seconds rounded up
/// (at least 1); if it is already set by another policy, the later of the two is kept.
/// Callers that must not pass an upstream's own `RateLimit` fields remove them first.
pub fn apply_headers(headers: &mut HeaderMap, policy: &RatePolicy, decision: &Decision) {
    let name = sf_string(&policy.name);
    let policy_field = format!("{name};q={};w={}", policy.requests, policy.period_secs);
    let state_field = format!(
        "{name};r={};t={}",
        decision.remaining,
        whole_seconds_up(decision.reset_after)
    );
    for (header, value) in [(&RATELIMIT_POLICY, policy_field), (&RATELIMIT, state_field)] {
        // Every byte is printable ASCII (see `sf_string`), so this cannot fail.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(header.clone(), value);
        }
    }
    if !decision.allowed {
        let wait = decision.retry_after.unwrap_or(decision.reset_after);
        let secs = whole_seconds_up(wait).max(1);
        let current = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if current.is_none_or(|current| current < secs) {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
    }
}

/// Seconds, rounded up: telling a client to retry a little early only earns another 429.
fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A structured-field string (RFC 8941 §3.3.3): quoted, `"` and `\` escaped. Validated
/// policy names never need escaping; anything outside printable ASCII is dropped so an
/// unvalidated name cannot break the header.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| matches!(c, ' '..='~')) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        let _ = out.write_char(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RatePolicy {
        RatePolicy {
            name: "api".to_owned(),
            requests: 100,
            period_secs: 60,
            burst: 50,
        }
    }

    fn fields(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn an_allowed_request_gets_policy_and_state_but_no_retry_after() {
        let mut headers = HeaderMap::new();
        let decision = Decision {
            allowed: true,
            limit: 50,
            remaining: 42,
            reset_after: Duration::from_millis(16_200),
            retry_after: None,
        };
        apply_headers(&mut headers, &policy(), &decision);
        assert_eq!(fields(&headers, &RATELIMIT_POLICY), [r#""api";q=100;w=60"#]);
        assert_eq!(fields(&headers, &RATELIMIT), [r#""api";r=42;t=17"#]);
        assert!(headers.get(RETRY_AFTER).is_none());
    }

    #[test]
    fn a_refused_request_gets_retry_after_in_whole_seconds_rounded_up() {
        let mut headers = HeaderMap::new();
        let decision = Decision {
            allowed: false,
            limit: 50,
            remaining: 0,
            reset_after: Duration::from_secs(30),
            retry_after: Some(Duration::from_millis(600)),
        };
        apply_headers(&mut headers, &policy(), &decision);
        assert_eq!(fields(&headers, &RATELIMIT), [r#""api";r=0;t=30"#]);
        assert_eq!(fields(&headers, &RETRY_AFTER), ["1"]);
    }

    #[test]
    fn two_policies_are_both_listed_and_the_longer_retry_after_wins() {
        let mut headers = HeaderMap::new();
        let refused = |secs| Decision {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset_after: Duration::from_secs(secs),
            retry_after: Some(Duration::from_secs(secs)),
        };
        let global = RatePolicy {
            name: "global".to_owned(),
            ..policy()
        };
        apply_headers(&mut headers, &policy(), &refused(7));
        apply_headers(&mut headers, &global, &refused(3));
        assert_eq!(
            fields(&headers, &RATELIMIT),
            [r#""api";r=0;t=7"#, r#""global";r=0;t=3"#]
        );
        assert_eq!(fields(&headers, &RETRY_AFTER), ["7"]);
    }

    #[test]
    fn an_unvalidated_name_is_escaped_into_a_valid_sf_string() {
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(sf_string("x\ny\u{e9}"), r#""xy""#);
    }
}
