//! The rotation state machine over simulated hours: the invariants at every step and the schedule.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use tessera_keys::{KeyChange, KeyPolicy, KeyState, Keyset};
use time::OffsetDateTime;

use crate::{MINUTE, at, hourly_policy, step};

fn duration(d: std::time::Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap()
}

/// What a verifier and a signer would have seen so far, to check the rotation rules.
#[derive(Default)]
struct Observer {
    published_since: HashMap<String, OffsetDateTime>,
    stopped_signing: HashMap<String, OffsetDateTime>,
    pems: HashMap<String, String>,
    removed: HashSet<String>,
    signer: Option<String>,
    activations: Vec<i64>,
}

impl Observer {
    /// Checks the keyset produced at `minute`, given the one before.
    fn observe(&mut self, policy: &KeyPolicy, minute: i64, before: &Keyset, after: &Keyset) {
        let now = at(minute);
        after.validate().unwrap();
        let actives: Vec<_> = after
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .collect();
        assert_eq!(actives.len(), 1, "minute {minute}: exactly one active key");
        let published: HashSet<String> = after
            .jwks()
            .keys
            .into_iter()
            .filter_map(|jwk| jwk.common.key_id)
            .collect();
        assert_eq!(
            published.len(),
            after.keys.len(),
            "minute {minute}: every key is published"
        );

        for key in &after.keys {
            assert!(
                !self.removed.contains(&key.kid),
                "minute {minute}: removed kid {} came back",
                key.kid
            );
            self.published_since.entry(key.kid.clone()).or_insert(now);
            let pem = self
                .pems
                .entry(key.kid.clone())
                .or_insert_with(|| key.private_key_pem.expose().to_owned());
            assert_eq!(
                pem,
                key.private_key_pem.expose(),
                "minute {minute}: key {} regenerated",
                key.kid
            );
        }

        let active = &actives[0].kid;
        if self.signer.as_ref() != Some(active) {
            if let Some(old) = self.signer.take() {
                self.stopped_signing.insert(old, now);
                let published_for = now - self.published_since[active];
                assert!(
                    published_for >= duration(policy.pre_publication),
                    "minute {minute}: {active} signs after being published for only {published_for}"
                );
            } else {
                assert_eq!(
                    minute, 0,
                    "only the bootstrap key signs without pre-publication"
                );
            }
            self.activations.push(minute);
            self.signer = Some(active.clone());
        }

        for old in &before.keys {
            if after.key(&old.kid).is_none() {
                let retired_for = now - self.stopped_signing[&old.kid];
                assert!(
                    retired_for >= duration(policy.retirement),
                    "minute {minute}: {} left the JWKS {retired_for} after it stopped signing",
                    old.kid
                );
                self.removed.insert(old.kid.clone());
            }
        }
    }
}

#[test]
fn six_hours_of_minute_steps_keep_every_rotation_rule() {
    let policy = hourly_policy();
    let mut set = Keyset::empty();
    let mut deadline: Option<OffsetDateTime> = None;
    let mut observer = Observer::default();

    for minute in 0..=6 * 60 {
        let now = at(minute);
        let rotation = step(&set, &policy, minute, false);
        if let Some(deadline) = deadline {
            assert!(
                now <= deadline,
                "minute {minute}: the clock passed a deadline"
            );
            if now < deadline {
                assert!(
                    rotation.is_unchanged(),
                    "minute {minute}: changed before the deadline"
                );
                assert_eq!(rotation.keyset, set, "minute {minute}");
            } else {
                assert!(
                    !rotation.is_unchanged(),
                    "minute {minute}: nothing changed at the deadline"
                );
            }
        }
        assert!(
            rotation.next_deadline > now,
            "minute {minute}: deadline in the past"
        );
        deadline = Some(rotation.next_deadline);
        observer.observe(&policy, minute, &set, &rotation.keyset);
        set = rotation.keyset;
    }

    assert_eq!(observer.activations, vec![0, 60, 120, 180, 240, 300, 360]);
    assert_eq!(
        observer.removed.len(),
        5,
        "every replaced key but the last left after retirement"
    );
}

#[test]
fn manual_rotation_requests_never_activate_a_key_before_pre_publication() {
    let policy = hourly_policy();
    // Requests as an operator would record them (annotation timestamps); a request is
    // pending while it is newer than the active key's activation.
    let requests = [5, 17, 18, 100, 131, 200];
    let mut set = Keyset::empty();
    let mut observer = Observer::default();
    for minute in 0..=4 * 60 {
        let requested = requests
            .iter()
            .filter(|r| **r <= minute)
            .max()
            .map(|r| at(*r));
        let activated = set.active().and_then(|k| k.activated_at);
        let force = matches!((requested, activated), (Some(r), Some(a)) if r > a);
        let rotation = step(&set, &policy, minute, force);
        assert!(rotation.next_deadline > at(minute), "minute {minute}");
        observer.observe(&policy, minute, &set, &rotation.keyset);
        set = rotation.keyset;
    }
    // 0 bootstrap; request 5 -> next at 5, active at 15; requests 17 and 18 -> one next
    // at 17, active at 27; scheduled at 27 + 60 = 87; request 100 -> 110; request 131 ->
    // 141; the request at 200 finds the scheduled next key of 191, active at 201.
    assert_eq!(observer.activations, vec![0, 15, 27, 87, 110, 141, 201]);
}

/// The changes of each step, with kids replaced by k1, k2... in order of appearance.
fn timeline(minutes: i64, policy: &KeyPolicy) -> String {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut set = Keyset::empty();
    let mut out = String::new();
    let state = |s: Option<KeyState>| s.map_or("-", KeyState::as_str);
    for minute in 0..=minutes {
        let rotation = step(&set, policy, minute, false);
        for KeyChange { kid, from, to } in &rotation.changes {
            let count = names.len();
            let name = names
                .entry(kid.clone())
                .or_insert_with(|| format!("k{}", count + 1));
            writeln!(
                out,
                "{minute:>3} {name}: {} -> {}",
                state(*from),
                state(*to)
            )
            .unwrap();
        }
        set = rotation.keyset;
    }
    out
}

#[test]
fn the_first_three_hours_follow_the_documented_schedule() {
    let expected = "  0 k1: - -> active
 50 k2: - -> next
 60 k1: active -> retiring
 60 k2: next -> active
 80 k1: retiring -> -
110 k3: - -> next
120 k2: active -> retiring
120 k3: next -> active
140 k2: retiring -> -
170 k4: - -> next
180 k3: active -> retiring
180 k4: next -> active
";
    assert_eq!(timeline(180, &hourly_policy()), expected);
}

#[test]
fn a_retirement_longer_than_the_interval_keeps_several_retiring_keys() {
    let policy = KeyPolicy {
        retirement: 150 * MINUTE,
        ..hourly_policy()
    };
    let mut set = Keyset::empty();
    for minute in 0..=200 {
        set = step(&set, &policy, minute, false).keyset;
    }
    let retiring = set
        .keys
        .iter()
        .filter(|k| k.state == KeyState::Retiring)
        .count();
    assert_eq!(
        retiring, 3,
        "keys replaced at 60, 120 and 180 are all still published"
    );
}
